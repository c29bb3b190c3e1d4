//! Configuring a [`Client`]: every setting, validated at `build` with the setting named.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::balancing::affinity::key::HashPolicy;
use crate::balancing::aperture::ApertureSettings;
use crate::balancing::balancer::{self, Balancer, Policy, Subsetting};
use crate::balancing::checker;
use crate::balancing::health::HealthCheck;
use crate::balancing::outlier::OutlierDetection;
use crate::balancing::picker::PickerKind;
use crate::balancing::wrr::weight::WrrSettings;
use crate::client::{Client, Inner};
use crate::connections::shared::{ConnectSettings, DEFAULT_CONNECT_TIMEOUT};
use crate::connections::{distinct, plan};
use crate::discovery::resolver::{self, DnsSettings};
use crate::discovery::target::Target;
use crate::error::{BuildError, MAX_LIFETIME, MAX_TIMER};
use crate::prober::{Prober, ProberBuildError};
use crate::tls::Trust;

/// The default per-request timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bounded loads' default slack: Envoy's and gRPC's usual 1.25 load balancing factor.
const DEFAULT_EPSILON: f64 = 0.25;

/// Configures a [`Client`]; made by [`Client::builder`].
///
/// ```
/// use std::time::Duration;
/// use qlb_client::{Client, HealthCheck, PickerKind, Trust};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder("10.0.0.1:443,10.0.0.2:443".parse()?, Trust::Insecure)
///     .server_name("api.internal")
///     .timeout(Duration::from_secs(10))
///     .picker(PickerKind::PowerOfTwoChoices)
///     .min_connections(1)
///     .max_lifetime(Duration::from_secs(120))
///     .idle_timeout(Duration::from_secs(60))
///     .health_check(HealthCheck { interval: Duration::from_secs(2), ..HealthCheck::default() })
///     .build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use]
pub struct ClientBuilder {
    target: Target,
    trust: Trust,
    server_name: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    picker: PickerKind,
    hash_policy: HashPolicy,
    epsilon: f64,
    wrr: WrrSettings,
    outlier_detection: Option<OutlierDetection>,
    aperture: ApertureSettings,
    distinct: bool,
    distinct_redial_interval: Duration,
    limits: plan::Limits,
    max_lifetime: Option<Duration>,
    zero_rtt: bool,
    health_check: Option<HealthCheck>,
    dns: DnsSettings,
    subset: Option<usize>,
    client_id: Option<u64>,
}

impl ClientBuilder {
    pub(crate) fn new(target: Target, trust: Trust) -> Self {
        Self {
            target,
            trust,
            server_name: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            picker: PickerKind::default(),
            hash_policy: HashPolicy::default(),
            epsilon: DEFAULT_EPSILON,
            wrr: WrrSettings::default(),
            outlier_detection: None,
            aperture: ApertureSettings::default(),
            distinct: false,
            distinct_redial_interval: distinct::DEFAULT_REFILL,
            limits: plan::Limits::default(),
            max_lifetime: None,
            zero_rtt: false,
            health_check: None,
            dns: DnsSettings::default(),
            subset: None,
            client_id: None,
        }
    }

    /// The TLS server name (SNI, certificate check) and the authority of relative request
    /// URIs. Defaults to the target's first host ([`Target::host`]), else `localhost`.
    ///
    /// ```
    /// # let target = "10.0.0.1:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure).server_name("api.internal");
    /// ```
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// The whole-exchange timeout of each request (override per request with
    /// [`RequestTimeout`](crate::RequestTimeout)). Default 30 s; at most a day.
    ///
    /// ```
    /// # let target = "10.0.0.1:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure)
    ///     .timeout(std::time::Duration::from_secs(5));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a QUIC handshake may take. Default 10 s; at most a day.
    ///
    /// ```
    /// # let target = "10.0.0.1:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure)
    ///     .connect_timeout(std::time::Duration::from_secs(2));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How the backend of each request is chosen. Default round robin.
    ///
    /// ```
    /// # let target = "10.0.0.1:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure)
    ///     .picker(qlb_client::PickerKind::LeastLoaded);
    /// ```
    pub fn picker(mut self, picker: PickerKind) -> Self {
        self.picker = picker;
        self
    }

    /// Where the `ring-hash` and `maglev` pickers find the key of a request that carries no
    /// [`HashKey`](crate::HashKey) extension. Default: only the extension.
    ///
    /// ```
    /// # let target = "10.0.0.1:443".parse().unwrap();
    /// use qlb_client::{HashPolicy, PickerKind};
    ///
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure)
    ///     .picker(PickerKind::RingHash)
    ///     .hash_policy(HashPolicy::Cookie("session".to_owned()));
    /// ```
    pub fn hash_policy(mut self, policy: HashPolicy) -> Self {
        self.hash_policy = policy;
        self
    }

    /// Bounded loads for the hashing pickers: no backend takes more than
    /// `ceil((1 + epsilon) * average)` requests in flight; a key whose backend is full goes
    /// to its next preference. Default 0.25; above 0 (large values: strict affinity).
    ///
    /// ```
    /// # let target = "10.0.0.1:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure)
    ///     .picker(qlb_client::PickerKind::Maglev)
    ///     .bounded_load(0.5);
    /// ```
    pub fn bounded_load(mut self, epsilon: f64) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// How the `wrr` picker weighs load reports. Default [`WrrSettings::default`].
    ///
    /// ```
    /// # let target = "10.0.0.1:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure)
    ///     .picker(qlb_client::PickerKind::Wrr)
    ///     .wrr(qlb_client::WrrSettings::default());
    /// ```
    pub fn wrr(mut self, settings: WrrSettings) -> Self {
        self.wrr = settings;
        self
    }

    /// How the `aperture` picker sizes and places its window. Default
    /// [`ApertureSettings::default`] (at least 12 backends, a random place on the ring).
    ///
    /// ```
    /// # let target = "10.0.0.1:443".parse().unwrap();
    /// use qlb_client::{ApertureSettings, Coordinate, PickerKind};
    ///
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure)
    ///     .picker(PickerKind::Aperture)
    ///     .aperture(ApertureSettings {
    ///         min_aperture: 2,
    ///         coordinate: Some(Coordinate { index: 4, count: 20 }),
    ///         ..ApertureSettings::default()
    ///     });
    /// ```
    pub fn aperture(mut self, settings: ApertureSettings) -> Self {
        self.aperture = settings;
        self
    }

    /// Eject backends that fail too often, with any picker. Default: off.
    ///
    /// ```
    /// # let target = "10.0.0.1:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure)
    ///     .outlier_detection(qlb_client::OutlierDetection::default());
    /// ```
    pub fn outlier_detection(mut self, detection: OutlierDetection) -> Self {
        self.outlier_detection = Some(detection);
        self
    }

    /// Connections kept open to every backend even before the first request and while
    /// idle. Default 0: a backend's first request opens its connection.
    ///
    /// ```
    /// # let target = "10.0.0.1:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure).min_connections(2);
    /// ```
    pub fn min_connections(mut self, count: usize) -> Self {
        self.limits.min_connections = count;
        self
    }

    /// Retire connections this old (+-10% jitter): a replacement is opened first, the old
    /// connection takes requests until the replacement is ready, then finishes the ones it
    /// carries and closes. Default: never; at most a year.
    ///
    /// ```
    /// # let target = "10.0.0.1:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure)
    ///     .max_lifetime(std::time::Duration::from_secs(300));
    /// ```
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = Some(lifetime);
        self
    }

    /// Resume sessions with 0-RTT: the client keeps the servers' session tickets (one store
    /// for all its connections), and a new connection (a replacement, a reconnect) that has
    /// one sends its requests of safe methods (GET, HEAD, OPTIONS) as early data, saving a
    /// round trip; other requests wait for the handshake. An early request the server
    /// answers `425 Too Early`, or whose early data it refused, is sent again once, after
    /// the handshake. Off by default; off, sessions still resume, without early data.
    ///
    /// Early data can be replayed by an attacker (RFC 8446 section 8): turn this on only
    /// if your GET, HEAD and OPTIONS requests are safe to repeat. (`qlb demo` runs with it
    /// on.)
    ///
    /// ```
    /// # let target = "10.0.0.1:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure).zero_rtt(true);
    /// ```
    pub fn zero_rtt(mut self, on: bool) -> Self {
        self.zero_rtt = on;
        self
    }

    /// Distinct backends behind one address: each connection learns which server it
    /// reached (the `qlb-server-id` field qlb-server sends on every response, asked with a
    /// `HEAD /` once it is open), and one that reached a server another connection of its
    /// pool reached already is replaced, within a budget of 8 redials per connection that
    /// gets one back every [`distinct_redial_interval`](Self::distinct_redial_interval).
    /// With `min_connections(N)` against a load balancer's VIP: N connections to N backends
    /// (if the fleet has them), found again as the fleet grows. Default off.
    ///
    /// ```
    /// # let target = "10.0.0.1:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure)
    ///     .min_connections(4)
    ///     .distinct_backends(true);
    /// ```
    pub fn distinct_backends(mut self, on: bool) -> Self {
        self.distinct = on;
        self
    }

    /// With [`distinct_backends`](Self::distinct_backends), how often a pool whose redial
    /// budget is spent may replace one more duplicate: the price of finding backends that
    /// join (one handshake per interval while the fleet is smaller than the pool). Default
    /// 5 s; at most a day.
    ///
    /// ```
    /// # let target = "10.0.0.1:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure)
    ///     .distinct_backends(true)
    ///     .distinct_redial_interval(std::time::Duration::from_secs(30));
    /// ```
    pub fn distinct_redial_interval(mut self, interval: Duration) -> Self {
        self.distinct_redial_interval = interval;
        self
    }

    /// Close connections beyond `min_connections` once their backend had no request for
    /// this long. Default: never; at most a day.
    ///
    /// ```
    /// # let target = "10.0.0.1:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure)
    ///     .idle_timeout(std::time::Duration::from_secs(90));
    /// ```
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.limits.idle_timeout = Some(idle);
        self
    }

    /// Check every backend actively; unhealthy ones get no requests while healthy ones
    /// exist. Default: no checks (every backend counts as healthy).
    ///
    /// ```
    /// # let target = "10.0.0.1:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure)
    ///     .health_check(qlb_client::HealthCheck::default());
    /// ```
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health_check = Some(check);
        self
    }

    /// How often a `dns://` target is resolved again. Default 30 s; at least 5 s, at most a
    /// day. While half the backends are unhealthy or unreachable, it is resolved again
    /// sooner (every 5 s at most).
    ///
    /// ```
    /// # let target = "dns://api.internal:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure)
    ///     .dns_interval(std::time::Duration::from_secs(10));
    /// ```
    pub fn dns_interval(mut self, interval: Duration) -> Self {
        self.dns.interval = interval;
        self
    }

    /// Ask this name server (UDP) instead of the system's; call again to add more.
    ///
    /// ```
    /// # let target = "dns://api.internal:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure)
    ///     .dns_nameserver("10.96.0.10:53".parse().unwrap());
    /// ```
    pub fn dns_nameserver(mut self, addr: SocketAddr) -> Self {
        self.dns.nameservers.push(addr);
        self
    }

    /// Use at most `size` of the target's backends, chosen by rendezvous hashing on the
    /// client ID: stable per client, and spread evenly over many clients. Default: all.
    ///
    /// ```
    /// # let target = "dns://api.internal:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure)
    ///     .subset(3)
    ///     .client_id(0x5eed);
    /// ```
    pub fn subset(mut self, size: usize) -> Self {
        self.subset = Some(size);
        self
    }

    /// The ID subsetting hashes on (a stable one, such as a hash of the pod name, keeps the
    /// subset across restarts). Default: random per client.
    ///
    /// ```
    /// # let target = "dns://api.internal:443".parse().unwrap();
    /// let builder = qlb_client::Client::builder(target, qlb_client::Trust::Insecure).client_id(7);
    /// ```
    pub fn client_id(mut self, id: u64) -> Self {
        self.client_id = Some(id);
        self
    }

    /// Validates the settings and starts the client's tasks (resolver, pool maintenance,
    /// health checks). Must be called inside a tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let err = qlb_client::Client::builder("127.0.0.1:443".parse()?, qlb_client::Trust::Insecure)
    ///     .subset(0)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), "subset: must be at least 1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(self) -> Result<Client, BuildError> {
        self.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BuildError::Field {
                field: "runtime",
                problem: "build() must be called inside a tokio runtime".to_owned(),
            });
        }
        let server_name: Arc<str> = self
            .server_name
            .as_deref()
            .or(self.target.host())
            .unwrap_or("localhost")
            .into();
        let mut settings = ConnectSettings::new(&self.trust, &server_name, self.zero_rtt)?;
        settings.connect_timeout = self.connect_timeout;
        settings.max_lifetime = self.max_lifetime;
        let subsetting = self.subset.map(|size| Subsetting {
            size,
            client_id: self.client_id.unwrap_or_else(rand::random),
        });
        let policy = Policy {
            picker: self.picker,
            epsilon: self.epsilon,
            wrr: self.wrr,
            outlier_detection: self.outlier_detection,
            aperture: self.aperture,
            subsetting,
        };
        let limits = plan::Limits {
            distinct: self.distinct.then_some(self.distinct_redial_interval),
            ..self.limits
        };
        let balancer = Arc::new(Balancer::new(policy, Arc::new(settings), limits));
        let dns = match &self.target {
            Target::Dns(_) => Some(self.dns.resolver()?),
            _ => None,
        };
        let mut tasks = vec![
            tokio::spawn(resolver::run(
                self.target,
                dns,
                self.dns.interval,
                balancer.clone(),
            ))
            .abort_handle(),
            tokio::spawn(balancer::maintain(balancer.clone())).abort_handle(),
        ];
        if let Some(check) = self.health_check {
            let prober = Prober::new(&self.trust).map_err(|err| match err {
                ProberBuildError::Tls(tls) => BuildError::Tls(tls),
                other => BuildError::Field {
                    field: "health_check",
                    problem: other.to_string(),
                },
            })?;
            let task = checker::run(check, prober, server_name.clone(), balancer.clone());
            tasks.push(tokio::spawn(task).abort_handle());
        }
        Ok(Client::from_inner(Inner {
            balancer,
            server_name,
            timeout: self.timeout,
            hash_policy: self.hash_policy,
            retries: Arc::default(),
            tasks,
        }))
    }

    fn validate(&self) -> Result<(), BuildError> {
        let check = |field, value: Option<Duration>, max| {
            value.map_or(Ok(()), |value| {
                BuildError::check_duration(field, value, max)
            })
        };
        check("timeout", Some(self.timeout), MAX_TIMER)?;
        check("connect_timeout", Some(self.connect_timeout), MAX_TIMER)?;
        check("max_lifetime", self.max_lifetime, MAX_LIFETIME)?;
        check("idle_timeout", self.limits.idle_timeout, MAX_TIMER)?;
        check(
            "distinct_redial_interval",
            Some(self.distinct_redial_interval),
            MAX_TIMER,
        )?;
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(BuildError::Field {
                field: "bounded_load",
                problem: format!(
                    "epsilon must be a finite number above 0, not {}",
                    self.epsilon
                ),
            });
        }
        self.wrr.validate()?;
        self.aperture.validate()?;
        if let Some(detection) = &self.outlier_detection {
            detection.validate()?;
        }
        if self.subset == Some(0) {
            return Err(BuildError::Field {
                field: "subset",
                problem: "must be at least 1".to_owned(),
            });
        }
        if let Target::Static(list) = &self.target {
            if list.is_empty() {
                return Err(BuildError::Field {
                    field: "target",
                    problem: "no backend".to_owned(),
                });
            }
        }
        self.dns.validate()?;
        self.health_check
            .as_ref()
            .map_or(Ok(()), HealthCheck::validate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> ClientBuilder {
        ClientBuilder::new("127.0.0.1:443".parse().expect("target"), Trust::Insecure)
    }

    #[test]
    fn bad_settings_name_their_field() {
        let zero = Duration::ZERO;
        for (bad, field) in [
            (builder().timeout(zero), "timeout"),
            (builder().connect_timeout(zero), "connect_timeout"),
            (builder().max_lifetime(zero), "max_lifetime"),
            (builder().idle_timeout(zero), "idle_timeout"),
            (builder().subset(0), "subset"),
            (builder().bounded_load(0.0), "bounded_load"),
            (
                builder().distinct_redial_interval(zero),
                "distinct_redial_interval",
            ),
            (builder().bounded_load(f64::NAN), "bounded_load"),
            (
                builder().wrr(WrrSettings {
                    weight_update_period: zero,
                    ..WrrSettings::default()
                }),
                "wrr.weight_update_period",
            ),
            (
                builder().aperture(ApertureSettings {
                    min_aperture: 3,
                    max_aperture: 2,
                    ..ApertureSettings::default()
                }),
                "aperture.min_aperture",
            ),
            (
                builder().outlier_detection(OutlierDetection {
                    failure_rate: 2.0,
                    ..OutlierDetection::default()
                }),
                "outlier_detection.failure_rate",
            ),
            // Past their maxima: tasks would overflow an `Instant` adding them.
            (builder().timeout(Duration::MAX), "timeout"),
            (builder().connect_timeout(MAX_TIMER * 2), "connect_timeout"),
            (builder().max_lifetime(MAX_LIFETIME * 2), "max_lifetime"),
            (builder().idle_timeout(Duration::MAX), "idle_timeout"),
            (builder().dns_interval(Duration::MAX), "dns_interval"),
            (
                builder().health_check(HealthCheck {
                    interval: Duration::MAX,
                    ..HealthCheck::default()
                }),
                "health_check.interval",
            ),
            (
                builder().dns_interval(Duration::from_millis(4999)),
                "dns_interval",
            ),
            (
                builder().health_check(HealthCheck {
                    unhealthy_threshold: 0,
                    ..HealthCheck::default()
                }),
                "health_check.unhealthy_threshold",
            ),
            (
                ClientBuilder::new(Target::Static(Vec::new()), Trust::Insecure),
                "target",
            ),
        ] {
            let message = bad.validate().expect_err(field).to_string();
            assert!(message.starts_with(&format!("{field}: ")), "{message}");
        }
        assert!(builder().validate().is_ok());
    }

    #[test]
    fn building_outside_a_runtime_is_refused() {
        let message = builder().build().expect_err("no runtime").to_string();
        assert!(message.starts_with("runtime: "), "{message}");
    }
}
