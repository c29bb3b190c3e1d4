//! Pool building: the routing pool a configuration describes.

use qlb_router::{Backend, BackendState, Pool, PoolError};
use quic_lb::Decoder;

use super::schema::{BackendConfig, LbConfig};

impl LbConfig {
    /// The routing pool this configuration describes, with the backends for which `is_down`
    /// says so marked down (health checks decide that, not the file).
    ///
    /// ```
    /// use qlb_lb::config::LbConfig;
    ///
    /// let config = LbConfig::from_toml(r#"
    ///     listen = ["127.0.0.1:4433"]
    ///     [[backend]]
    ///     name = "b1"
    ///     addr = "127.0.0.1:5001"
    ///     server_id = "01"
    /// "#, ".".as_ref())?;
    /// assert_eq!(config.pool(|_| false)?.backends().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pool(&self, is_down: impl Fn(&str) -> bool) -> Result<Pool, PoolError> {
        self.pool_with(|b| {
            if is_down(&b.name) {
                BackendState::Down
            } else {
                b.state
            }
        })
    }

    /// The routing pool this configuration describes, each backend in the state `state_of`
    /// gives it (the daemon combines the file's state, admin drains and health this way).
    ///
    /// ```
    /// use qlb_lb::config::LbConfig;
    /// use qlb_router::BackendState;
    ///
    /// let config = LbConfig::from_toml(r#"
    ///     listen = ["127.0.0.1:4433"]
    ///     [[backend]]
    ///     name = "b1"
    ///     addr = "127.0.0.1:5001"
    ///     server_id = "01"
    /// "#, ".".as_ref())?;
    /// let pool = config.pool_with(|_| BackendState::Draining)?;
    /// assert_eq!(pool.backends()[0].state(), BackendState::Draining);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pool_with(
        &self,
        state_of: impl Fn(&BackendConfig) -> BackendState,
    ) -> Result<Pool, PoolError> {
        let mut decoder = Decoder::new();
        for config in &self.cluster.quic_lb {
            decoder.insert(config.clone());
        }
        let backends = self.backends.iter().map(|b| {
            self.cluster.quic_lb.iter().fold(
                Backend::new(b.name.clone(), b.addr)
                    .with_weight(b.weight)
                    .with_state(state_of(b)),
                |backend, config| backend.with_server_id(config.id(), b.server_id),
            )
        });
        Pool::new(decoder, backends)
    }
}
