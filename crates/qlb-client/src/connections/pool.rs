//! The connections to one backend: opened, chosen for requests, retired and closed as
//! [`plan`](crate::connections::plan) decides. This layer only carries the decisions out and keeps the books.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::connections::distinct::{self, Redials};
use crate::connections::lease::{Lease, RequestObserver};
use crate::connections::plan;
use crate::connections::shared::{self, ConnShared, ConnectSettings, Early, Event, Listener};
use crate::error::{ConnectError, Error};
use crate::stats::snapshot::{BackendStats, CloseReason, bump};
use crate::sync::lock;

/// One connection slot of the pool.
enum Slot {
    /// The handshake runs.
    Connecting(u64),
    /// It takes requests.
    Ready(Arc<ConnShared>),
}

impl Slot {
    fn id(&self) -> u64 {
        match self {
            Self::Connecting(id) => *id,
            Self::Ready(conn) => conn.id,
        }
    }
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    /// Retired connections still finishing their requests.
    draining: Vec<Arc<ConnShared>>,
    /// Requests waiting for a connection.
    waiting: usize,
    last_used: Option<Instant>,
    /// Failed connection attempts so far, the last one's error, and those in a row.
    failures: u64,
    last_failure: Option<Arc<ConnectError>>,
    failures_in_row: u32,
    /// No background connection attempt before this (back-off after failures).
    retry_at: Option<Instant>,
    /// The backend is gone: open nothing more.
    closed: bool,
    /// The budget of replacements for connections that reached a server twice.
    redials: Redials,
}

/// The connections to one backend.
pub(crate) struct Pool {
    addr: SocketAddr,
    settings: Arc<ConnectSettings>,
    limits: plan::Limits,
    /// Outside the client's aperture: no minimum, idle connections close at once.
    standby: AtomicBool,
    state: Mutex<State>,
    /// Wakes requests waiting for a connection.
    changed: Notify,
    pub(crate) stats: BackendStats,
}

impl Pool {
    pub(crate) fn new(
        addr: SocketAddr,
        settings: Arc<ConnectSettings>,
        limits: plan::Limits,
    ) -> Arc<Self> {
        Arc::new(Self {
            addr,
            settings,
            limits,
            standby: AtomicBool::new(false),
            state: Mutex::default(),
            changed: Notify::new(),
            stats: BackendStats::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Puts the pool on standby (the backend left the client's aperture: it keeps no
    /// connection it does not use) or back in service.
    pub(crate) fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::Relaxed);
    }

    /// The limits the plan follows now.
    fn limits(&self) -> plan::Limits {
        if self.standby.load(Ordering::Relaxed) {
            plan::Limits {
                min_connections: 0,
                idle_timeout: Some(Duration::ZERO),
                ..self.limits
            }
        } else {
            self.limits
        }
    }

    /// A connection for one request: the one [`plan::choose`] picks, waiting for a
    /// handshake if none is ready. Fails with the connection error if an attempt fails
    /// while waiting. `observer` (the backend) keeps the books on the request.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        observer: Arc<dyn RequestObserver>,
    ) -> Result<Lease, Error> {
        let mut seen_failures = None;
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = self.lock();
                let failures = *seen_failures.get_or_insert(state.failures);
                if let Some(source) = state
                    .last_failure
                    .clone()
                    .filter(|_| state.failures > failures)
                {
                    return Err(Error::Connect {
                        addr: self.addr,
                        source,
                    });
                }
                if state.closed {
                    return Err(Error::NoBackends(format!("{} left the target", self.addr)));
                }
                let now = Instant::now();
                while let Some(conn) = choose(&state, now) {
                    state.last_used = Some(now);
                    if conn.try_acquire() {
                        return Ok(Lease::new(conn, Some(observer)));
                    }
                    // It started draining in between (GOAWAY): out of the slots with it.
                    self.retire_gone_away(&mut state, conn.id);
                }
                state.waiting += 1;
                self.carry_out(&mut state, now, true);
            }
            let _waiting = Waiting(self);
            changed.await;
        }
    }

    /// Runs the plan once (the maintenance task's tick): opens what is due, retires what
    /// expired or idled.
    pub(crate) fn maintain(self: &Arc<Self>) {
        let mut state = self.lock();
        self.carry_out(&mut state, Instant::now(), false);
    }

    /// The backend left the target: every connection drains, nothing new opens.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        for slot in std::mem::take(&mut state.slots) {
            if let Slot::Ready(conn) = slot {
                conn.start_draining(CloseReason::Removed);
                state.draining.push(conn);
            }
        }
        drop(state);
        self.changed.notify_waiters();
    }

    /// Connections that take requests now.
    pub(crate) fn ready(&self) -> Vec<Arc<ConnShared>> {
        let state = self.lock();
        ready_conns(&state).cloned().collect()
    }

    /// The servers the connections taking requests reached, where known (sorted).
    pub(crate) fn server_ids(&self) -> Vec<String> {
        let state = self.lock();
        let mut ids: Vec<String> = ready_conns(&state)
            .filter_map(|conn| conn.server_id().map(str::to_owned))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Connections open now, draining ones included.
    pub(crate) fn open_count(&self) -> usize {
        let state = self.lock();
        ready_conns(&state).count() + state.draining.len()
    }

    /// Whether the last connection attempt failed.
    pub(crate) fn is_failing(&self) -> bool {
        self.lock().failures_in_row > 0
    }

    /// A request ended.
    pub(crate) fn touch(&self) {
        self.lock().last_used = Some(Instant::now());
    }

    /// Applies the plan for now. `foreground`: a request waits, so connection attempts
    /// ignore the back-off.
    fn carry_out(self: &Arc<Self>, state: &mut State, now: Instant, foreground: bool) {
        if state.closed {
            return;
        }
        let limits = self.limits();
        if let Some(refill) = limits.distinct {
            self.retire_duplicates(state, limits.min_connections, now, refill);
        }
        let conns: Vec<plan::Conn> = state
            .slots
            .iter()
            .map(|slot| match slot {
                Slot::Connecting(id) => plan::Conn {
                    id: *id,
                    ready: false,
                    expires_at: None,
                    in_flight: 0,
                },
                Slot::Ready(conn) => view(conn),
            })
            .collect();
        let planned = plan::plan(&conns, &limits, &demand(state), now);
        for &(id, reason) in &planned.drain {
            self.retire(state, id, reason);
        }
        self.stats.replacements.fetch_add(
            planned.replaced as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let backing_off = state.retry_at.is_some_and(|at| now < at);
        if foreground || !backing_off {
            for _ in 0..planned.open {
                self.open(state);
            }
        }
    }

    /// Retires connection `id` after GOAWAY (whoever notices first: its driver, or a
    /// request that found it draining); a replacement if the backend still needs one.
    fn retire_gone_away(&self, state: &mut State, id: u64) {
        if self.retire(state, id, CloseReason::GoAway) {
            let conns: Vec<plan::Conn> = ready_conns(state).map(|conn| view(conn)).collect();
            if plan::wanted(&conns, &self.limits(), &demand(state), Instant::now()) > 0 {
                bump(&self.stats.replacements);
            }
        }
    }

    /// Retires the connections that reached the server of an older one, while the redial
    /// budget of a pool of `connections` lasts, refilled every `refill` (the plan then
    /// opens their replacements).
    fn retire_duplicates(
        &self,
        state: &mut State,
        connections: usize,
        now: Instant,
        refill: Duration,
    ) {
        let identities: Vec<(u64, Option<&str>)> = ready_conns(state)
            .map(|conn| (conn.id, conn.server_id()))
            .collect();
        let duplicates = distinct::duplicates(&identities);
        for id in duplicates {
            if !state.redials.take(connections, now, refill) {
                break;
            }
            self.retire(state, id, CloseReason::Duplicate);
        }
    }

    /// Moves ready connection `id` from the slots to the draining list; false if it was not
    /// there.
    fn retire(&self, state: &mut State, id: u64, reason: CloseReason) -> bool {
        let Some(index) = state.slots.iter().position(|slot| slot.id() == id) else {
            return false;
        };
        match state.slots.remove(index) {
            Slot::Ready(conn) => {
                tracing::debug!(backend = %self.addr, connection = id, reason = reason.as_str(), "draining");
                conn.start_draining(reason);
                state.draining.push(conn);
                true
            }
            connecting => {
                state.slots.push(connecting);
                false
            }
        }
    }

    /// Starts one connection attempt.
    fn open(self: &Arc<Self>, state: &mut State) {
        let id = shared::next_id();
        state.slots.push(Slot::Connecting(id));
        let pool = self.clone();
        tokio::spawn(async move {
            let weak = Arc::downgrade(&pool);
            let listener: Listener = Arc::new(move |id, event| {
                if let Some(pool) = Weak::upgrade(&weak) {
                    pool.on_event(id, event);
                }
            });
            let result = ConnShared::open(id, pool.addr, &pool.settings, listener).await;
            pool.opened(id, result);
        });
    }

    /// A connection attempt ended.
    fn opened(self: &Arc<Self>, id: u64, result: Result<Arc<ConnShared>, ConnectError>) {
        let mut state = self.lock();
        state.slots.retain(|slot| slot.id() != id);
        let now = Instant::now();
        match result {
            Ok(conn) => {
                bump(&self.stats.connections_opened);
                if conn.early() == Early::Pending {
                    bump(&self.stats.resumed);
                    let (pool, conn) = (self.clone(), conn.clone());
                    tokio::spawn(async move {
                        match conn.handshake_done().await {
                            Early::Accepted => bump(&pool.stats.zero_rtt_accepted),
                            _ => bump(&pool.stats.zero_rtt_rejected),
                        }
                    });
                }
                state.failures_in_row = 0;
                state.retry_at = None;
                if state.closed {
                    conn.start_draining(CloseReason::Removed);
                    state.draining.push(conn);
                } else {
                    if self.limits.distinct.is_some() {
                        let (conn, within) = (conn.clone(), self.settings.connect_timeout);
                        tokio::spawn(async move { conn.probe_identity(within).await });
                    }
                    state.slots.push(Slot::Ready(conn));
                }
            }
            Err(err) => {
                tracing::debug!(backend = %self.addr, error = %err, "connection attempt failed");
                bump(&self.stats.connect_failures);
                state.failures += 1;
                state.failures_in_row = state.failures_in_row.saturating_add(1);
                state.retry_at = Some(now + plan::backoff(state.failures_in_row));
                state.last_failure = Some(Arc::new(err));
            }
        }
        self.carry_out(&mut state, now, false);
        drop(state);
        self.changed.notify_waiters();
    }

    /// What a connection's driver reports.
    fn on_event(self: &Arc<Self>, id: u64, event: Event) {
        let mut state = self.lock();
        match event {
            Event::GoAway => self.retire_gone_away(&mut state, id),
            Event::Closed => {
                let closed = match state.slots.iter().position(|slot| slot.id() == id) {
                    Some(index) => match state.slots.remove(index) {
                        Slot::Ready(conn) => Some(conn),
                        Slot::Connecting(_) => None,
                    },
                    None => state
                        .draining
                        .iter()
                        .position(|conn| conn.id == id)
                        .map(|index| state.draining.swap_remove(index)),
                };
                if let Some(conn) = closed {
                    self.stats.closed(conn.close_reason());
                }
            }
            // Carrying out the plan below retires it if it duplicates another.
            Event::Identified => {}
        }
        self.carry_out(&mut state, Instant::now(), false);
        drop(state);
        self.changed.notify_waiters();
    }
}

fn ready_conns(state: &State) -> impl Iterator<Item = &Arc<ConnShared>> {
    state.slots.iter().filter_map(|slot| match slot {
        Slot::Ready(conn) => Some(conn),
        Slot::Connecting(_) => None,
    })
}

/// A ready connection as the plan sees it.
fn view(conn: &ConnShared) -> plan::Conn {
    plan::Conn {
        id: conn.id,
        ready: true,
        expires_at: conn.expires_at,
        in_flight: conn.in_flight(),
    }
}

/// What asks for connections, as the plan sees it.
fn demand(state: &State) -> plan::Demand {
    plan::Demand {
        waiting: state.waiting,
        last_used: state.last_used,
        failing: state.failures_in_row > 0,
    }
}

/// The connection [`plan::choose`] gives the next request.
fn choose(state: &State, now: Instant) -> Option<Arc<ConnShared>> {
    let conns: Vec<plan::Conn> = ready_conns(state).map(|conn| view(conn)).collect();
    let id = plan::choose(&conns, now)?;
    ready_conns(state).find(|conn| conn.id == id).cloned()
}

/// A request counted as waiting for a connection, until it stops waiting.
struct Waiting<'a>(&'a Pool);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.waiting = state.waiting.saturating_sub(1);
    }
}
