//! Weighted round robin from load reports (gRFC A58): the report a backend sends with each
//! response ([`report`]), the weight a client derives from a backend's reports over time
//! ([`weight`]), and the stride scheduler that spreads requests by weight ([`stride`]).

pub(crate) mod report;
pub(crate) mod stride;
pub(crate) mod weight;
