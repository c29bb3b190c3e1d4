//! The server-wide drain signal: nothing while serving, the shutdown deadline once draining.

use std::time::Instant;

use tokio::sync::watch;

/// The sending side, held by the server.
pub(crate) type DrainSender = watch::Sender<Option<Instant>>;
/// The receiving side, one per connection task.
pub(crate) type DrainReceiver = watch::Receiver<Option<Instant>>;

/// Whether the server is draining: read by `/healthz` and by any handler that wants to know.
/// Obtained from [`Server::drain_state`](crate::Server::drain_state).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use qlb_server::Server;
/// use quic_lb::{Config, ConfigId};
///
/// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
/// let server = Server::builder(config, "0001".parse()?).bind("127.0.0.1:0".parse()?)?;
/// let drain = server.drain_state();
/// assert!(!drain.is_draining());
/// server.shutdown(Duration::from_secs(1)).await;
/// assert!(drain.is_draining());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct DrainState(DrainReceiver);

impl DrainState {
    pub(crate) fn new(receiver: DrainReceiver) -> Self {
        Self(receiver)
    }

    /// Whether a shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.0.borrow().is_some()
    }
}

/// Starts a drain with `deadline`, or moves an earlier drain's deadline forward (never back).
/// Returns whether anything changed.
pub(crate) fn begin(sender: &DrainSender, deadline: Instant) -> bool {
    sender.send_if_modified(|current| match current {
        Some(existing) if *existing <= deadline => false,
        _ => {
            *current = Some(deadline);
            true
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn deadlines_only_move_earlier() {
        let (sender, receiver) = watch::channel(None);
        let state = DrainState::new(receiver.clone());
        assert!(!state.is_draining());
        let t0 = Instant::now();
        assert!(begin(&sender, t0 + Duration::from_secs(10)));
        assert!(state.is_draining());
        assert!(!begin(&sender, t0 + Duration::from_secs(20)));
        assert!(begin(&sender, t0 + Duration::from_secs(5)));
        assert_eq!(*receiver.borrow(), Some(t0 + Duration::from_secs(5)));
    }
}
