//! Where the kernel does loopback's receive work. A datagram sent on loopback is received
//! (IP, UDP, the socket's queue) by the sending CPU, so by default the generator's CPU pays
//! for what the forwarder receives, and one generator CPU cannot offer more than about
//! 300,000 single datagrams/s: a forwarder that batches keeps up, and its capacity per core
//! never shows. Receive Packet Steering on `lo` (`LB_BENCH_RPS=1`) hands that work to the
//! forwarder's CPU, where a load balancer's NIC interrupts would put it; the forwarder's CPU
//! then also receives for the sinks, as it already does by sending to them.

use std::path::Path;

use crate::BenchResult;

/// `lo`'s only receive queue.
const RPS_CPUS: &str = "/sys/class/net/lo/queues/rx-0/rps_cpus";

/// Loopback's receive work steered to one CPU while this lives; the previous mask comes
/// back on drop.
pub(crate) struct LoopbackSteering {
    previous: String,
}

impl LoopbackSteering {
    /// Steers to `cpu` (needs root).
    pub(crate) fn to_cpu(cpu: usize) -> BenchResult<Self> {
        let path = Path::new(RPS_CPUS);
        let previous = std::fs::read_to_string(path)
            .map_err(|e| format!("LB_BENCH_RPS: reading {RPS_CPUS}: {e}"))?;
        let mask = 1u128
            .checked_shl(u32::try_from(cpu)?)
            .ok_or("LB_BENCH_RPS: CPU number too large")?;
        std::fs::write(path, format!("{mask:x}"))
            .map_err(|e| format!("LB_BENCH_RPS: writing {RPS_CPUS} (needs root): {e}"))?;
        Ok(Self {
            previous: previous.trim().to_owned(),
        })
    }
}

impl Drop for LoopbackSteering {
    fn drop(&mut self) {
        if let Err(error) = std::fs::write(RPS_CPUS, &self.previous) {
            eprintln!(
                "warning: could not restore {RPS_CPUS} to {}: {error}",
                self.previous
            );
        }
    }
}
