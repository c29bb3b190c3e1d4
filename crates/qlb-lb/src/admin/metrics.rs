//! The load balancer's Prometheus metrics, encoded from a [`Status`] at scrape time: the data
//! plane keeps plain per-worker counters and the status already sums them, so the metrics are
//! the same numbers as `GET /status`. `docs/metrics.md` lists every family.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use qlb_router::BackendState;

use crate::control_plane::{BackendStatus, FleetStatus, Status};
use crate::health::Health;

/// The content type of [`encode`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Encodes `status` as Prometheus (OpenMetrics) text.
///
/// ```no_run
/// # async fn scrape(balancer: qlb_lb::Balancer) -> Result<(), std::fmt::Error> {
/// let text = qlb_lb::admin::encode_metrics(balancer.status().await)?;
/// assert!(text.contains("# TYPE qlb_lb_packets counter"));
/// # Ok(())
/// # }
/// ```
pub fn encode(status: Status) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(status)));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

#[derive(Debug)]
struct Snapshot(Status);

const BACKEND_STATES: [BackendState; 3] = [
    BackendState::Active,
    BackendState::Draining,
    BackendState::Down,
];

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let status = &self.0;
        let backends = &status.backends;
        let directed = |value: fn(&BackendStatus) -> [u64; 2]| {
            backends.iter().flat_map(move |b| {
                let [to_backend, to_client] = value(b);
                [
                    (
                        [("backend", b.name.as_str()), ("direction", "to_backend")],
                        to_backend,
                    ),
                    (
                        [("backend", b.name.as_str()), ("direction", "to_client")],
                        to_client,
                    ),
                ]
            })
        };
        family(
            &mut encoder,
            MetricType::Counter,
            "qlb_lb_packets",
            "Datagrams forwarded, per backend and direction",
            directed(|b| [b.to_backend.packets, b.to_client.packets]),
        )?;
        family(
            &mut encoder,
            MetricType::Counter,
            "qlb_lb_bytes",
            "UDP payload octets forwarded, per backend and direction",
            directed(|b| [b.to_backend.bytes, b.to_client.bytes]),
        )?;
        let dropped_by_router: u64 = status.dropped.router.values().sum();
        // `xdp` mode's program decides in the kernel: its series are the same families,
        // told apart by path="xdp" (decisions) and stage="xdp" (drops).
        let xdp = status.xdp.as_ref();
        let on_xdp = |labels: Vec<(&'static str, String)>| {
            labels
                .into_iter()
                .chain([("path", "xdp".to_owned())])
                .collect::<Vec<_>>()
        };
        family(
            &mut encoder,
            MetricType::Counter,
            "qlb_lb_codepoint_decisions",
            "Client datagrams routed by the server ID in their CID (kind=\"cid\"), by the \
             QUIC-LB codepoint they were decoded under; during a key rotation the old \
             codepoint's rate falls to zero as its connections end",
            status
                .routed_by_codepoint
                .iter()
                .map(|(config_id, count)| (vec![("config_id", config_id.to_string())], *count))
                .chain(xdp.into_iter().flat_map(|xdp| {
                    xdp.routed_by_codepoint
                        .iter()
                        .map(move |(config_id, count)| {
                            (on_xdp(vec![("config_id", config_id.to_string())]), *count)
                        })
                })),
        )?;
        family(
            &mut encoder,
            MetricType::Counter,
            "qlb_lb_decisions",
            "Routing decisions for client datagrams: forwarded by route (cid, dcid_table, \
             tuple_table, fallback), or drop; path=\"xdp\" for the XDP program's",
            status
                .routed
                .iter()
                .map(|(route, count)| (vec![("kind", (*route).to_owned())], *count))
                .chain([(vec![("kind", "drop".to_owned())], dropped_by_router)])
                .chain(xdp.into_iter().flat_map(|xdp| {
                    xdp.routed
                        .iter()
                        .map(move |(route, count)| {
                            (on_xdp(vec![("kind", (*route).to_owned())]), *count)
                        })
                        .chain([(
                            on_xdp(vec![("kind", "drop".to_owned())]),
                            xdp.dropped.values().sum(),
                        )])
                })),
        )?;
        family(
            &mut encoder,
            MetricType::Counter,
            "qlb_lb_dropped",
            "Datagrams dropped, by stage (router: before forwarding; dataplane: flows, sends \
             and GUE; xdp: the XDP program, with the router's reasons) and reason",
            status
                .dropped
                .router
                .iter()
                .map(|(reason, count)| ([("stage", "router"), ("reason", *reason)], *count))
                .chain(
                    status.dropped.dataplane.iter().map(|(reason, count)| {
                        ([("stage", "dataplane"), ("reason", *reason)], *count)
                    }),
                )
                .chain(xdp.into_iter().flat_map(|xdp| {
                    xdp.dropped
                        .iter()
                        .map(|(reason, count)| ([("stage", "xdp"), ("reason", *reason)], *count))
                })),
        )?;
        if let Some(xdp) = xdp {
            family(
                &mut encoder,
                MetricType::Gauge,
                "qlb_lb_xdp_running",
                "1 while the XDP program is attached and deciding, 0 when it could not be \
                 loaded or attached (the userspace data plane forwards everything)",
                [(
                    [("interface", xdp.interface.as_str())],
                    u64::from(xdp.running),
                )],
            )?;
        }
        for (kind, name, help, value) in [
            (
                MetricType::Counter,
                "qlb_lb_receive_errors",
                "Failed receive calls of the data plane",
                status.receive_errors,
            ),
            (
                MetricType::Gauge,
                "qlb_lb_flows_active",
                "Flows (client address, listening address and backend) in the flow tables",
                status.flows.active,
            ),
            (
                MetricType::Gauge,
                "qlb_lb_flows_unconfirmed",
                "Flows in the flow tables that their backend has not answered yet",
                status.flows.unconfirmed,
            ),
            (
                MetricType::Counter,
                "qlb_lb_flows_created",
                "Flows opened",
                status.flows.created,
            ),
            (
                MetricType::Counter,
                "qlb_lb_flows_confirmed",
                "Flows whose backend answered",
                status.flows.confirmed,
            ),
            (
                MetricType::Counter,
                "qlb_lb_flows_expired",
                "Flows forgotten after flow_idle_timeout without traffic",
                status.flows.expired,
            ),
            (
                MetricType::Counter,
                "qlb_lb_retries_sent",
                "Retry packets sent in answer to token-less Initials (Retry offload)",
                status.retry.sent,
            ),
            (
                MetricType::Counter,
                "qlb_lb_retry_tokens_valid",
                "Initials with a valid Retry token, forwarded",
                status.retry.tokens_valid,
            ),
            (
                MetricType::Counter,
                "qlb_lb_retry_tokens_invalid",
                "Initials with a token that did not validate, dropped",
                status.retry.tokens_invalid,
            ),
            (
                MetricType::Counter,
                "qlb_lb_retry_tokens_expired",
                "Initials with an expired Retry token",
                status.retry.tokens_expired,
            ),
            (
                MetricType::Counter,
                "qlb_lb_retry_tokens_new_token",
                "Initials with a backend's NEW_TOKEN token",
                status.retry.tokens_new_token,
            ),
        ] {
            sample(
                kind,
                value,
                encoder.encode_descriptor(name, help, None, kind)?,
            )?;
        }
        for (name, help, counts) in [
            (
                "qlb_lb_flows_evicted",
                "Unconfirmed flows evicted for new ones, by reason (unconfirmed_cap: \
                 max_unconfirmed_flows reached; table_full: max_flows reached)",
                &status.flows.evicted,
            ),
            (
                "qlb_lb_flows_refused",
                "New flows refused, by reason (table_full: no flow could be evicted; \
                 upstream_socket: no socket)",
                &status.flows.refused,
            ),
        ]
        .into_iter()
        .chain(xdp.map(|xdp| {
            (
                "qlb_lb_xdp_passed",
                "Client datagrams the XDP program passed up to the userspace data plane, by \
                 reason",
                &xdp.passed,
            )
        })) {
            family(
                &mut encoder,
                MetricType::Counter,
                name,
                help,
                counts
                    .iter()
                    .map(|(reason, count)| ([("reason", *reason)], *count)),
            )?;
        }
        family(
            &mut encoder,
            MetricType::Gauge,
            "qlb_lb_backend_state",
            "1 for the state the router gives each backend (active, draining, down), else 0",
            backends.iter().flat_map(|b| {
                BACKEND_STATES.map(|state| {
                    (
                        [("backend", b.name.as_str()), ("state", state.as_str())],
                        u64::from(b.effective_state == state),
                    )
                })
            }),
        )?;
        let checked = || {
            backends
                .iter()
                .filter_map(|b| Some((b.name.as_str(), b.health.as_ref()?)))
        };
        family(
            &mut encoder,
            MetricType::Gauge,
            "qlb_lb_backend_health",
            "1 for each checked backend's health state (unknown, up, unready, down), else 0",
            checked().flat_map(|(name, health)| {
                Health::ALL.map(|state| {
                    (
                        [("backend", name), ("state", state.as_str())],
                        u64::from(health.state == state),
                    )
                })
            }),
        )?;
        family(
            &mut encoder,
            MetricType::Counter,
            "qlb_lb_health_checks",
            "Health checks per backend, by result",
            checked().flat_map(|(name, health)| {
                [
                    (
                        [("backend", name), ("result", "passed")],
                        health.checks_passed,
                    ),
                    (
                        [("backend", name), ("result", "failed")],
                        health.checks_failed,
                    ),
                ]
            }),
        )?;
        family(
            &mut encoder,
            MetricType::Counter,
            "qlb_lb_health_transitions",
            "Health state changes per backend, by the state entered",
            checked().flat_map(|(name, health)| {
                [
                    ([("backend", name), ("to", "up")], health.transitions_up),
                    (
                        [("backend", name), ("to", "unready")],
                        health.transitions_unready,
                    ),
                    ([("backend", name), ("to", "down")], health.transitions_down),
                ]
            }),
        )?;
        family(
            &mut encoder,
            MetricType::Counter,
            "qlb_lb_reloads",
            "Configuration reloads, by result (applied, refused)",
            [
                ([("result", "applied")], status.reloads.applied),
                ([("result", "refused")], status.reloads.refused),
            ],
        )?;
        family(
            &mut encoder,
            MetricType::Counter,
            "qlb_lb_admin_refused",
            "Admin API requests refused, by reason (host: not one of the API's names; origin: \
             a cross-origin POST; token: no valid bearer token)",
            status
                .admin_refused
                .iter()
                .map(|(reason, count)| ([("reason", *reason)], *count)),
        )?;
        if let Some(fleet) = &status.fleet {
            fleet_families(&mut encoder, fleet)?;
        }
        Ok(())
    }
}

/// The fleet on etcd (with an `[etcd]` table only), labelled by cluster.
fn fleet_families(encoder: &mut DescriptorEncoder, fleet: &FleetStatus) -> fmt::Result {
    let cluster = [("cluster", fleet.cluster.as_str())];
    let revision = u64::try_from(fleet.revision).unwrap_or(0);
    for (kind, name, help, value) in [
        (
            MetricType::Gauge,
            "qlb_lb_fleet_etcd_connected",
            "1 while etcd answers, 0 while forwarding goes on with the last fleet known",
            u64::from(fleet.connected),
        ),
        (
            MetricType::Gauge,
            "qlb_lb_fleet_revision",
            "The etcd revision of the last fleet change applied: equal on load balancers \
             that agree",
            revision,
        ),
        (
            MetricType::Gauge,
            "qlb_lb_fleet_members",
            "Fleet members routed to",
            fleet.members as u64,
        ),
        (
            MetricType::Gauge,
            "qlb_lb_fleet_members_left_out",
            "Fleet members left out (a server ID already held, a record that does not parse)",
            fleet.left_out.len() as u64,
        ),
        (
            MetricType::Counter,
            "qlb_lb_fleet_updates",
            "Fleet changes applied",
            fleet.updates,
        ),
        (
            MetricType::Counter,
            "qlb_lb_fleet_etcd_disconnects",
            "Times the link to etcd was lost",
            fleet.disconnects,
        ),
    ] {
        family(encoder, kind, name, help, [(cluster, value)])?;
    }
    Ok(())
}

/// One family of `kind` (counter or gauge; counters get `_total` in their samples).
fn family<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    kind: MetricType,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        sample(kind, value, family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One sample of `kind`.
fn sample(kind: MetricType, value: u64, encoder: MetricEncoder) -> fmt::Result {
    if matches!(kind, MetricType::Counter) {
        ConstCounter::new(value).encode(encoder)
    } else {
        ConstGauge::new(value).encode(encoder)
    }
}
