//! `xdp` mode's kernel fast path: the XDP program ([`qlb_xdp`]) on the client-facing
//! interface, fed every pool the workers get. It makes the same decisions and writes the same
//! GUE packets as the workers; what it passes up reaches them as in `gue` mode.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use qlb_router::{Pool, TableLimits};
use qlb_xdp::{AttachMode, XdpCounters, XdpError, XdpOptions, XdpProgram};

use super::gue::GueOptions;

/// Where and how the program runs (`DataplaneOptions::xdp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelPathOptions {
    /// The interface client datagrams to the VIPs arrive on.
    pub interface: String,
    /// Native, generic, or whichever the driver allows.
    pub attach: AttachMode,
}

/// The program, loaded and attached, until [`KernelPath::stop`] detaches and unloads it.
#[derive(Debug)]
pub(crate) struct KernelPath {
    program: Mutex<Running>,
    listen: Vec<SocketAddr>,
    interface: String,
}

/// The program while it runs, and its last counters once stopped.
#[derive(Debug)]
enum Running {
    Attached(XdpProgram),
    Stopped(Option<XdpCounters>),
}

/// What `/status` says of the kernel path.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelPathState {
    /// Attached to the interface, deciding.
    Attached {
        /// The interface.
        interface: String,
    },
    /// Not running: the userspace data plane forwards everything (`gue` mode).
    Failed {
        /// The interface it was to run on.
        interface: String,
        /// Why the program could not be loaded or attached.
        reason: String,
    },
}

impl KernelPath {
    /// Loads the program for `gue`'s outer source and ports and `limits`' flow tables, gives
    /// it `pool` for datagrams to `listen`, and attaches it.
    pub(crate) fn start(
        options: &KernelPathOptions,
        gue: &GueOptions,
        limits: TableLimits,
        initials_up: bool,
        listen: &[SocketAddr],
        pool: &Pool,
    ) -> Result<Arc<Self>, XdpError> {
        let maglev_capacity = pool
            .maglev_slots()
            .len()
            .max(Pool::DEFAULT_MAGLEV_SIZE)
            .try_into()
            .unwrap_or(u32::MAX);
        let mut program = XdpProgram::load(XdpOptions {
            gue_source: gue.bind,
            gue_ports: gue.ports,
            table_limits: limits,
            maglev_capacity,
            initials_up,
        })?;
        program.install(pool, listen)?;
        program.attach(&options.interface, options.attach)?;
        Ok(Arc::new(Self {
            program: Mutex::new(Running::Attached(program)),
            listen: listen.to_vec(),
            interface: options.interface.clone(),
        }))
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        self.program.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives the program `pool`, swapped in whole (nothing once stopped).
    pub(crate) fn set_pool(&self, pool: &Pool) -> Result<(), XdpError> {
        match &mut *self.running() {
            Running::Attached(program) => program.install(pool, &self.listen),
            Running::Stopped(_) => Ok(()),
        }
    }

    /// The program's counters, summed over CPUs (once stopped, the last ones read).
    pub(crate) fn counters(&self) -> Result<XdpCounters, XdpError> {
        match &*self.running() {
            Running::Attached(program) => program.counters(),
            Running::Stopped(last) => Ok(last.clone().unwrap_or_default()),
        }
    }

    /// Detaches and unloads the program, its counters kept: its interface's datagrams go
    /// up the stack again.
    pub(crate) fn stop(&self) {
        let mut running = self.running();
        let last = match &*running {
            Running::Attached(program) => program.counters().ok(),
            Running::Stopped(last) => last.clone(),
        };
        // Dropping the program detaches it.
        *running = Running::Stopped(last);
    }

    pub(crate) fn interface(&self) -> &str {
        &self.interface
    }
}
