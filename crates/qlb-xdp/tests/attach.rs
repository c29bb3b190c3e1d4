//! The program attaches to a veth in a namespace natively (in the driver) and generically
//! (in the stack), and detaches when dropped.

mod support;

use qlb_router::{Pool, TableLimits};
use qlb_testkit::TestResult;
use qlb_xdp::{AttachMode, XdpOptions, XdpProgram};
use support::{INTERFACE, LB_V4, Lab};

#[test]
fn attaches_natively_and_generically_on_veth_and_detaches_on_drop() -> TestResult {
    if !qlb_testkit::netns::available() {
        return Ok(());
    }
    std::thread::spawn(|| -> TestResult {
        let lab = Lab::new("xdpattach", 1)?;
        lab.netns.enter()?;
        let options = XdpOptions {
            gue_source: std::net::SocketAddr::new(LB_V4.into(), 6080),
            gue_ports: 1,
            table_limits: TableLimits::default(),
            maglev_capacity: Pool::DEFAULT_MAGLEV_SIZE as u32,
            initials_up: false,
        };
        for (mode, shown) in [
            (AttachMode::Native, "xdp"),
            (AttachMode::Generic, "xdpgeneric"),
        ] {
            let mut program = XdpProgram::load(options)?;
            program.attach(INTERFACE, mode)?;
            assert_eq!(
                lab.netns.xdp_attached(INTERFACE)?.as_deref(),
                Some(shown),
                "{mode:?}"
            );
            drop(program);
            assert_eq!(
                lab.netns.xdp_attached(INTERFACE)?,
                None,
                "{mode:?} after drop"
            );
        }
        Ok(())
    })
    .join()
    .map_err(|_| "the test thread panicked")?
    .map_err(|error| error.to_string().into())
}
