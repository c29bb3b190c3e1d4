//! The client's Prometheus metrics, encoded from a [`ClientSnapshot`] at each scrape (one
//! source of truth: the counters the snapshot reads).

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::stats::snapshot::{BackendSnapshot, ClientSnapshot, CloseReason};

/// Takes a client's snapshot at a scrape.
type Snapshotter = Box<dyn Fn() -> ClientSnapshot + Send + Sync>;

/// Encodes a client's metrics from the snapshot `take` returns at each scrape.
pub(crate) struct Collector {
    take: Snapshotter,
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector").finish_non_exhaustive()
    }
}

impl Collector {
    pub(crate) fn new(take: impl Fn() -> ClientSnapshot + Send + Sync + 'static) -> Self {
        Self {
            take: Box::new(take),
        }
    }
}

/// One per-backend series: name, help, type, value.
type Series = (
    &'static str,
    &'static str,
    MetricType,
    fn(&BackendSnapshot) -> u64,
);

const PER_BACKEND: [Series; 13] = [
    (
        "backend_healthy",
        "1 if health checks find the backend healthy (always without checks)",
        MetricType::Gauge,
        |b| u64::from(b.healthy),
    ),
    ("in_flight", "Requests in flight", MetricType::Gauge, |b| {
        b.in_flight
    }),
    (
        "requests",
        "Request attempts sent to the backend (a retry counts again)",
        MetricType::Counter,
        |b| b.requests,
    ),
    (
        "errors",
        "Request attempts that failed, timeouts included",
        MetricType::Counter,
        |b| b.errors,
    ),
    (
        "connections_open",
        "Connections open (taking requests or draining)",
        MetricType::Gauge,
        |b| b.connections_open,
    ),
    (
        "connections_opened",
        "Connections opened",
        MetricType::Counter,
        |b| b.connections_opened,
    ),
    (
        "connect_failures",
        "Connection attempts that failed",
        MetricType::Counter,
        |b| b.connect_failures,
    ),
    (
        "backend_ejected",
        "1 while outlier detection has the backend ejected",
        MetricType::Gauge,
        |b| u64::from(b.ejected),
    ),
    (
        "ejections",
        "Times outlier detection ejected the backend",
        MetricType::Counter,
        |b| b.ejections,
    ),
    (
        "replacements",
        "Connections retired (max lifetime, GOAWAY) while needed, so that a new one took over",
        MetricType::Counter,
        |b| b.replacements,
    ),
    (
        "resumed",
        "Connections opened with a session ticket (resuming, 0-RTT attempted)",
        MetricType::Counter,
        |b| b.resumed,
    ),
    (
        "zero_rtt_accepted",
        "Resuming connections whose 0-RTT early data the server accepted",
        MetricType::Counter,
        |b| b.zero_rtt_accepted,
    ),
    (
        "zero_rtt_rejected",
        "Resuming connections whose 0-RTT early data the server refused (early requests sent again)",
        MetricType::Counter,
        |b| b.zero_rtt_rejected,
    ),
];

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snapshot = (self.take)();
        let labels: Vec<[(&str, String); 1]> = snapshot
            .backends
            .iter()
            .map(|backend| [("backend", backend.addr.to_string())])
            .collect();
        for (name, help, kind, value) in PER_BACKEND {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (backend, labels) in snapshot.backends.iter().zip(&labels) {
                encode(kind, value(backend), family.encode_family(labels)?)?;
            }
        }
        let mut closes = encoder.encode_descriptor(
            "connection_closes",
            "Connections closed, by reason",
            None,
            MetricType::Counter,
        )?;
        for (backend, [label]) in snapshot.backends.iter().zip(&labels) {
            for reason in CloseReason::ALL {
                let labels = [label.clone(), ("reason", reason.as_str().to_owned())];
                let count = backend.connections_closed.get(reason);
                encode(MetricType::Counter, count, closes.encode_family(&labels)?)?;
            }
        }
        let retries = encoder.encode_descriptor(
            "retries",
            "Attempts of requests no server processed (GOAWAY, H3_REQUEST_REJECTED, no connection) sent again on another backend",
            None,
            MetricType::Counter,
        )?;
        encode(MetricType::Counter, snapshot.retries, retries)?;
        if let Some(size) = snapshot.aperture {
            let aperture = encoder.encode_descriptor(
                "aperture",
                "Backends in the aperture picker's window",
                None,
                MetricType::Gauge,
            )?;
            encode(MetricType::Gauge, size as u64, aperture)?;
        }
        Ok(())
    }
}

fn encode(
    kind: MetricType,
    value: u64,
    encoder: prometheus_client::encoding::MetricEncoder<'_>,
) -> Result<(), fmt::Error> {
    match kind {
        MetricType::Counter => ConstCounter::new(value).encode(encoder),
        _ => ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(encoder),
    }
}
