//! One worker's live counters: plain integers it alone writes, turned into [`Stats`] when
//! the handle asks. Traffic to clients is kept by backend index of the current pool, so that
//! counting a datagram is an array increment; a pool swap folds it into the totals by name.

use std::sync::Arc;

use qlb_router::{CounterSnapshot, Pool, Traffic};

use super::stats::{DataplaneDrop, FlowEviction, FlowRefusal, Stats};

#[derive(Debug)]
pub(crate) struct WorkerCounters {
    totals: Stats,
    to_clients: Vec<Traffic>,
}

impl WorkerCounters {
    pub(crate) fn new(pool: &Pool) -> Self {
        Self {
            totals: Stats::default(),
            to_clients: vec![Traffic::default(); pool.backends().len()],
        }
    }

    pub(crate) fn dropped(&mut self, reason: DataplaneDrop, datagrams: usize) {
        self.totals.add_dropped(reason, datagrams as u64);
    }

    pub(crate) fn flow_created(&mut self) {
        self.totals.flows_created += 1;
    }

    pub(crate) fn flow_confirmed(&mut self) {
        self.totals.flows_confirmed += 1;
    }

    pub(crate) fn flow_evicted(&mut self, reason: FlowEviction) {
        self.totals.add_evicted(reason);
    }

    pub(crate) fn flow_refused(&mut self, reason: FlowRefusal) {
        self.totals.add_refused(reason);
    }

    pub(crate) fn flow_expired(&mut self) {
        self.totals.flows_expired += 1;
    }

    pub(crate) fn receive_error(&mut self) {
        self.totals.receive_errors += 1;
    }

    /// Counts `datagrams` datagrams of `bytes` octets in all from the backend at `backend` (its
    /// index in the current pool) to a client.
    pub(crate) fn replied(&mut self, backend: usize, datagrams: usize, bytes: usize) {
        if let Some(traffic) = self.to_clients.get_mut(backend) {
            *traffic += Traffic {
                packets: datagrams as u64,
                bytes: bytes as u64,
            };
        }
    }

    /// Folds the traffic counted against `old` into the totals, ready to count against `new`.
    pub(crate) fn change_pool(&mut self, old: &Pool, new: &Pool) {
        fold(&mut self.totals, old, &self.to_clients);
        self.to_clients = vec![Traffic::default(); new.backends().len()];
    }

    /// The worker's stats: these counters against `pool`, its routers' counters and the
    /// number of flows it holds, all and unconfirmed.
    pub(crate) fn snapshot(
        &self,
        pool: &Pool,
        routers: impl IntoIterator<Item = CounterSnapshot>,
        (flows_active, flows_unconfirmed): (usize, usize),
    ) -> Stats {
        let mut stats = self.totals.clone();
        fold(&mut stats, pool, &self.to_clients);
        for router in routers {
            stats.router.merge(&router);
        }
        stats.flows_active = flows_active as u64;
        stats.flows_unconfirmed = flows_unconfirmed as u64;
        stats
    }
}

fn fold(stats: &mut Stats, pool: &Pool, traffic: &[Traffic]) {
    for (backend, traffic) in pool.backends().iter().zip(traffic) {
        if traffic.packets > 0 {
            stats.add_to_client(&Arc::from(backend.name()), *traffic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qlb_router::Backend;

    fn pool(names: &[&str]) -> Pool {
        let backends = names.iter().zip(1u16..).map(|(name, port)| {
            Backend::new(*name, std::net::SocketAddr::from(([192, 0, 2, 1], port)))
        });
        Pool::new(quic_lb::Decoder::new(), backends).expect("pool")
    }

    #[test]
    fn traffic_to_clients_survives_pool_swaps_by_name() {
        let first = pool(&["a", "b"]);
        let second = pool(&["b", "c"]);
        let mut counters = WorkerCounters::new(&first);
        counters.replied(0, 1, 100); // a
        counters.replied(1, 2, 300); // b
        counters.replied(7, 1, 1); // not in the pool: ignored
        counters.change_pool(&first, &second);
        counters.replied(0, 1, 50); // b, now at index 0
        counters.replied(1, 1, 10); // c
        let stats = counters.snapshot(&second, [], (3, 1));
        let traffic: Vec<(&str, u64, u64)> = stats
            .to_clients()
            .map(|(name, t)| (name, t.packets, t.bytes))
            .collect();
        assert_eq!(traffic, [("a", 1, 100), ("b", 3, 350), ("c", 1, 10)]);
        assert_eq!((stats.flows_active, stats.flows_unconfirmed), (3, 1));
    }

    #[test]
    fn drops_flows_and_errors_are_counted() {
        let pool = pool(&["a"]);
        let mut counters = WorkerCounters::new(&pool);
        counters.dropped(DataplaneDrop::FlowTableFull, 3);
        counters.flow_created();
        counters.flow_created();
        counters.flow_expired();
        counters.flow_confirmed();
        counters.flow_evicted(FlowEviction::UnconfirmedCap);
        counters.flow_refused(FlowRefusal::TableFull);
        counters.receive_error();
        let stats = counters.snapshot(&pool, [CounterSnapshot::default()], (1, 0));
        assert_eq!(stats.flows_confirmed, 1);
        assert_eq!(stats.evicted(FlowEviction::UnconfirmedCap), 1);
        assert_eq!(stats.refused(FlowRefusal::TableFull), 1);
        assert_eq!(stats.dropped(DataplaneDrop::FlowTableFull), 3);
        assert_eq!(
            (
                stats.flows_created,
                stats.flows_expired,
                stats.receive_errors
            ),
            (2, 1, 1)
        );
    }
}
