//! The active health checker: probes every backend each interval with the [`Prober`] and
//! feeds the results to the backends' thresholds.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::balancing::balancer::Balancer;
use crate::balancing::health::HealthCheck;
use crate::prober::Prober;

/// Checks the balancer's backends forever (the task is aborted with the client).
pub(crate) async fn run(
    check: HealthCheck,
    prober: Prober,
    server_name: Arc<str>,
    balancer: Arc<Balancer>,
) {
    let prober = Arc::new(prober);
    let check = Arc::new(check);
    let mut ticks = tokio::time::interval(check.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut probes = JoinSet::new();
        for backend in balancer.backends().iter().cloned() {
            let (prober, check, server_name) = (prober.clone(), check.clone(), server_name.clone());
            probes.spawn(async move {
                let result = prober
                    .probe(backend.addr, &server_name, &check.path, check.timeout)
                    .await;
                let ok = result.as_ref().is_ok_and(|outcome| outcome.is_healthy());
                if let Some(healthy) = backend.observe_health(ok, &check) {
                    let state = if healthy { "healthy" } else { "unhealthy" };
                    match &result {
                        Ok(outcome) => {
                            tracing::info!(backend = %backend.addr, status = %outcome.status, "backend {state}")
                        }
                        Err(err) => tracing::info!(backend = %backend.addr, error = %err, "backend {state}"),
                    }
                }
            });
        }
        while probes.join_next().await.is_some() {}
    }
}
