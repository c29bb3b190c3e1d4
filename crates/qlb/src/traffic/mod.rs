//! Client traffic for `qlb load` and `qlb demo`: request loops over [`qlb_client::Client`]s,
//! periodic connection migrations, a live progress line, the [`Tally`] they fill, what the
//! clients' balancing did, and the latency percentile plot (`--histogram`).

mod balancing;
mod connections;
mod engine;
mod migrate;
mod plot;
mod progress;
mod tally;

pub(crate) use engine::{Keys, Limit, Load, LoadSpec, LoadView};
pub(crate) use progress::Progress;
// The demo's report tests build summaries.
#[cfg(test)]
pub(crate) use connections::{Connections, Resumption};
pub(crate) use tally::{Summary, Tally};
