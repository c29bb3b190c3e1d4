//! Resolvers: they turn the target into backend addresses for the balancer, once (a static
//! list), on every change (a [`BackendList`]), or by polling DNS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use tokio::time::Instant;

use crate::discovery::target::{BackendList, HostPort, Target};
use crate::error::{BuildError, MAX_TIMER};

/// How often DNS is polled by default.
pub(crate) const DEFAULT_DNS_INTERVAL: Duration = Duration::from_secs(30);
/// The shortest polling interval allowed, and the shortest time between two early
/// re-resolutions.
pub(crate) const MIN_DNS_INTERVAL: Duration = Duration::from_secs(5);
/// How often the DNS loop looks at the backends' health between polls.
const HEALTH_GLANCE: Duration = Duration::from_millis(500);

/// The backends a resolver keeps up to date (the client's balancer): a trait, so that
/// discovery knows nothing of balancing.
pub(crate) trait BackendSet: Send + Sync + 'static {
    /// Adopts the addresses of the latest answer.
    fn set_addrs(&self, addrs: &[SocketAddr]);
    /// Resolving failed, saying `why`.
    fn resolution_failed(&self, why: String);
    /// Whether at least half of the backends are unhealthy or fail to connect: a reason to
    /// ask DNS again early.
    fn half_unusable(&self) -> bool;
}

/// How a DNS target is polled.
#[derive(Clone, Debug)]
pub(crate) struct DnsSettings {
    pub(crate) interval: Duration,
    /// Name servers to ask instead of the system's.
    pub(crate) nameservers: Vec<SocketAddr>,
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self {
            interval: DEFAULT_DNS_INTERVAL,
            nameservers: Vec::new(),
        }
    }
}

impl DnsSettings {
    /// Refuses an interval below the minimum or above a day, naming the setting.
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        if self.interval < MIN_DNS_INTERVAL {
            return Err(BuildError::Field {
                field: "dns_interval",
                problem: format!(
                    "{:?} is below the minimum of {MIN_DNS_INTERVAL:?}",
                    self.interval
                ),
            });
        }
        BuildError::check_duration("dns_interval", self.interval, MAX_TIMER)
    }

    /// A resolver asking for A and AAAA records, from the configured name servers or the
    /// system's configuration.
    pub(crate) fn resolver(&self) -> Result<TokioResolver, BuildError> {
        let provider = TokioConnectionProvider::default();
        let mut builder = if self.nameservers.is_empty() {
            TokioResolver::builder(provider).map_err(|err| BuildError::Dns(err.to_string()))?
        } else {
            let mut config = ResolverConfig::new();
            for &addr in &self.nameservers {
                config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            }
            TokioResolver::builder_with_config(config, provider)
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        if !self.nameservers.is_empty() {
            // Explicit name servers are the whole truth: no /etc/hosts.
            options.use_hosts_file = ResolveHosts::Never;
        }
        Ok(builder.build())
    }
}

/// Feeds `balancer` from `target` until the target can change no more (static lists) or
/// forever (the task is aborted with the client).
pub(crate) async fn run(
    target: Target,
    dns: Option<TokioResolver>,
    interval: Duration,
    balancer: Arc<impl BackendSet>,
) {
    match target {
        Target::Static(list) => resolve_static(&list, &*balancer).await,
        Target::List(list) => follow(&list, &*balancer).await,
        Target::Dns(name) => match dns {
            Some(resolver) => poll_dns(&resolver, &name, interval, &*balancer).await,
            None => balancer.resolution_failed("no DNS resolver".to_owned()),
        },
    }
}

/// Resolves every entry once (IP addresses as they are, names with the system resolver).
async fn resolve_static(list: &[HostPort], balancer: &impl BackendSet) {
    let mut addrs = Vec::new();
    let mut problems = Vec::new();
    for entry in list {
        match entry.ip() {
            Some(addr) => addrs.push(addr),
            None => match tokio::net::lookup_host((entry.host(), entry.port())).await {
                Ok(found) => addrs.extend(found),
                Err(err) => problems.push(format!("{entry}: {err}")),
            },
        }
    }
    for problem in &problems {
        tracing::warn!("resolving {problem}");
    }
    if addrs.is_empty() && !problems.is_empty() {
        balancer.resolution_failed(problems.join("; "));
    } else {
        balancer.set_addrs(&addrs);
    }
}

/// Adopts every change of the list, until its last handle is gone.
async fn follow(list: &BackendList, balancer: &impl BackendSet) {
    let mut changes = list.subscribe();
    loop {
        let addrs = changes.borrow_and_update().clone();
        balancer.set_addrs(&addrs);
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Polls every A and AAAA record of `name` each `interval`, and sooner (but not more often
/// than the minimum interval) while half the backends are unhealthy or unreachable. A failed
/// lookup keeps the backends of the last good one.
async fn poll_dns(
    resolver: &TokioResolver,
    name: &HostPort,
    interval: Duration,
    balancer: &impl BackendSet,
) {
    loop {
        let asked = Instant::now();
        // The poll is the point: answers must not come from the cache.
        resolver.clear_cache();
        match resolver.lookup_ip(name.host()).await {
            Ok(found) => {
                let addrs: Vec<SocketAddr> = found
                    .iter()
                    .map(|ip| SocketAddr::new(ip, name.port()))
                    .collect();
                tracing::debug!(%name, ?addrs, "resolved");
                balancer.set_addrs(&addrs);
            }
            Err(err) => {
                tracing::warn!(%name, error = %err, "DNS lookup failed; keeping the last answer");
                balancer.resolution_failed(format!("resolving {name}: {err}"));
            }
        }
        loop {
            tokio::time::sleep(HEALTH_GLANCE).await;
            let elapsed = asked.elapsed();
            if elapsed >= interval || (elapsed >= MIN_DNS_INTERVAL && balancer.half_unusable()) {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_below_the_minimum_are_refused() {
        let short = DnsSettings {
            interval: Duration::from_secs(4),
            ..DnsSettings::default()
        };
        let message = short.validate().expect_err("too short").to_string();
        assert!(
            message.starts_with("dns_interval: 4s is below the minimum of 5s"),
            "{message}"
        );
        assert!(DnsSettings::default().validate().is_ok());
    }
}
