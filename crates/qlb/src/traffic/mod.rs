//! Client traffic for `qlb load` and `qlb demo`: request loops over [`qlb_client::Client`]s,
//! periodic connection migrations, a live progress line, and the [`Tally`] they fill.

mod engine;
mod migrate;
mod progress;
mod tally;

pub(crate) use engine::{Limit, Load, LoadSpec, LoadView};
pub(crate) use progress::Progress;
pub(crate) use tally::{Resumption, Summary, Tally};
