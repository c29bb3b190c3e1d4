//! Pool building: the routing pool a configuration describes.

use qlb_router::{Backend, BackendState, HashKey, Pool, PoolError};
use quic_lb::Decoder;
use ring::hkdf;

use super::schema::{BackendConfig, LbConfig};
use super::secret::Secret;

/// HKDF-Extract salt: the one qlb-server derives its cluster keys under, so that a cluster
/// secret has one derivation scheme, its uses told apart by their labels.
const SALT: &[u8] = b"qlb cluster keys v1";
/// HKDF-Expand label of the fallback hash key.
const MAGLEV_LABEL: &[u8] = b"qlb maglev";

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
        let pool = Pool::new(decoder, backends)?;
        Ok(match &self.cluster.cluster_secret {
            Some(secret) => pool.with_hash_key(hash_key(secret)),
            None => pool,
        })
    }
}

/// The key of the fallback hash, derived from the cluster secret with HKDF-SHA256: the same
/// on every load balancer of the cluster, unknown to clients.
fn hash_key(secret: &Secret) -> HashKey {
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            16
        }
    }
    let mut key = [0u8; 16];
    hkdf::Salt::new(hkdf::HKDF_SHA256, SALT)
        .extract(secret.as_bytes())
        .expand(&[MAGLEV_LABEL], Len)
        .and_then(|okm| okm.fill(&mut key))
        // HKDF-SHA256 refuses only outputs longer than 255 * 32 octets.
        .expect("16 octets is a valid HKDF-SHA256 output length");
    HashKey::new(key)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use qlb_router::{Decision, Router};

    use super::*;

    fn config(secret: Option<&str>) -> LbConfig {
        let secret = secret.map_or(String::new(), |s| format!("cluster_secret = \"{s}\"\n"));
        let backends: String = (1..=5)
            .map(|n| {
                format!("[[backend]]\nname = \"b{n}\"\naddr = \"127.0.0.1:500{n}\"\nserver_id = \"0{n}\"\n")
            })
            .collect();
        let text = format!("{secret}listen = [\"127.0.0.1:4433\"]\n{backends}");
        LbConfig::from_toml(&text, ".".as_ref()).expect("valid")
    }

    /// The backend the fallback picks for the first Initial of each of `count` handshakes.
    fn choices(config: &LbConfig, count: u32) -> Vec<String> {
        let mut router = Router::new(Arc::new(config.pool(|_| false).expect("pool")));
        let client = "192.0.2.9:5555".parse().expect("addr");
        (0..count)
            .map(|n| {
                let mut initial = vec![0xc0, 0, 0, 0, 1, 8];
                initial.extend_from_slice(&u64::from(n).to_be_bytes());
                initial.resize(1200, 0);
                match router.route(&initial, client, Instant::now()) {
                    Decision::Forward(forward) => router
                        .pool()
                        .backend(forward.backend)
                        .map(|b| b.name().to_owned())
                        .expect("in pool"),
                    Decision::Drop(reason) => panic!("dropped: {reason:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn the_cluster_secret_keys_the_fallback_alike_on_every_instance() {
        let secret = "00112233445566778899aabbccddeeff";
        let keyed = config(Some(secret));
        assert!(keyed.pool(|_| false).expect("pool").is_hash_keyed());
        assert!(!config(None).pool(|_| false).expect("pool").is_hash_keyed());
        let count = 300;
        let mine = choices(&keyed, count);
        assert_eq!(
            mine,
            choices(&config(Some(secret)), count),
            "instances agree"
        );
        let other = choices(&config(Some("ffeeddccbbaa99887766554433221100")), count);
        let differ = mine.iter().zip(&other).filter(|(a, b)| a != b).count();
        // Unrelated choices among 5 backends differ 4 times in 5.
        assert!(differ > 200, "only {differ} of {count} differ");
    }
}
