//! quinn's "wake me when a send may succeed" for the GUE socket layer: ready once every
//! socket a transmit may leave by is writable. A send blocked on one socket must not be
//! retried at once because another one is writable (that would spin); UDP sockets are
//! writable nearly always, so waiting for all costs next to nothing.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::io::UdpIo;

/// What a [`Writable`] waits on: the sockets a transmit may leave by, asked afresh each time
/// (direct-return sockets come and go).
pub(crate) trait Exits: Send + Sync {
    /// The sockets, at this moment.
    fn sockets(&self) -> Vec<Arc<UdpIo>>;
}

type Waiting = Pin<Box<dyn Future<Output = io::Result<()>> + Send + Sync>>;

/// One task's writability waiter (quinn makes one per connection).
pub(crate) struct Writable {
    socket: Arc<dyn Exits>,
    waiting: Option<Waiting>,
}

impl Writable {
    pub(crate) fn new(socket: Arc<dyn Exits>) -> Self {
        Self {
            socket,
            waiting: None,
        }
    }
}

impl fmt::Debug for Writable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writable").finish_non_exhaustive()
    }
}

impl quinn::UdpPoller for Writable {
    fn poll_writable(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let waiting = this.waiting.get_or_insert_with(|| {
            let sockets = this.socket.sockets();
            Box::pin(async move {
                for socket in sockets {
                    socket.writable().await?;
                }
                Ok(())
            })
        });
        let result = waiting.as_mut().poll(cx);
        if result.is_ready() {
            // A finished future must not be polled again: the next call starts a new one.
            this.waiting = None;
        }
        result
    }
}
