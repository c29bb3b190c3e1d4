//! `xdp` mode's data plane on a veth in a namespace the test makes: the program is attached
//! when the data plane starts, counts what it decides, and is detached when it stops.

use std::net::{SocketAddr, UdpSocket};
use std::num::NonZeroUsize;
use std::sync::Arc;

use qlb_lb::dataplane::{
    Dataplane, DataplaneOptions, GueOptions, KernelPathOptions, KernelPathState,
};
use qlb_router::{Backend, Pool};
use qlb_testkit::TestResult;
use qlb_testkit::netns::Netns;
use qlb_xdp::AttachMode;

#[test]
fn the_program_runs_while_the_data_plane_does() -> TestResult {
    if !qlb_testkit::netns::available() {
        return Ok(());
    }
    std::thread::spawn(|| -> TestResult {
        let netns = Netns::new("lbxdp")?;
        netns.ip(&["link", "add", "xa", "type", "veth", "peer", "name", "xb"])?;
        netns.ip(&["addr", "add", "10.79.0.1/24", "dev", "xa"])?;
        netns.ip(&["link", "set", "xa", "up"])?;
        netns.ip(&["link", "set", "xb", "up"])?;
        netns.enter()?;
        let pool = Pool::new(
            quic_lb::Decoder::new(),
            [Backend::new("b1", "10.79.0.2:6080".parse()?)],
        )?;
        let options = DataplaneOptions {
            gue: Some(GueOptions {
                bind: "10.79.0.1:6080".parse()?,
                ports: 1,
            }),
            xdp: Some(KernelPathOptions {
                interface: "xa".to_owned(),
                attach: AttachMode::Generic,
            }),
            ..DataplaneOptions::default()
        };
        let listen: SocketAddr = "10.79.0.1:443".parse()?;
        let dataplane = Dataplane::start(&[listen], NonZeroUsize::MIN, Arc::new(pool), options)?;
        let handle = dataplane.handle();
        assert_eq!(
            handle.kernel_path(),
            Some(&KernelPathState::Attached {
                interface: "xa".to_owned()
            })
        );
        assert_eq!(netns.xdp_attached("xa")?.as_deref(), Some("xdpgeneric"));
        // A datagram sent to the VIP from this namespace goes out through the stack, not
        // in through xa: the program saw nothing yet, and counts are there.
        UdpSocket::bind("10.79.0.1:0")?.send_to(&[0x40; 64], listen)?;
        assert_eq!(handle.stats().xdp.map(|xdp| xdp.forwarded()), Some(0));

        let stats = dataplane.shutdown()?;
        assert!(stats.xdp.is_some(), "the last counters are kept");
        assert_eq!(
            netns.xdp_attached("xa")?,
            None,
            "detached when the data plane stopped"
        );
        Ok(())
    })
    .join()
    .map_err(|_| "the test thread panicked")?
    .map_err(|error| error.to_string().into())
}
