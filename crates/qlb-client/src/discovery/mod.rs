//! Where the backends are: the [`Target`](target::Target) a client is given, the resolvers
//! that turn it into addresses, and rendezvous subsetting of those addresses.

pub(crate) mod resolver;
pub(crate) mod subset;
pub(crate) mod target;
