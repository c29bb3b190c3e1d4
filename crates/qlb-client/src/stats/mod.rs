//! A client's numbers: the live counters and the snapshots read from them, and the Prometheus
//! collector that encodes a snapshot at each scrape.

pub(crate) mod prometheus;
pub(crate) mod snapshot;
