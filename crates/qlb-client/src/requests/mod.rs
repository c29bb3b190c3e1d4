//! One request on one connection: the exchange (head, body streamed out, response head) and
//! the streaming response body.

pub(crate) mod body;
pub(crate) mod request;
pub(crate) mod retry;
