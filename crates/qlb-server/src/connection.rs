//! One HTTP/3 connection: accept request streams, spawn their handlers, and carry out the
//! lifecycle's decisions (GOAWAYs, close). The decisions themselves are in
//! [`crate::lifecycle`] and [`crate::goaway`]; this loop only does the I/O.

use std::future::poll_fn;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use h3::error::Code;
use h3::quic::{RecvStream as _, SendStream as _, StreamId};
use http::StatusCode;
use quic_lb::ServerId;
use tokio::task::{JoinError, JoinSet};

use crate::drain::DrainReceiver;
use crate::early::{EarlySettings, HandshakeWaiter};
use crate::goaway::GoawayState;
use crate::lifecycle::{CloseReason, ConnectionLimits, Lifecycle, Step, goaway_settle_time};
use crate::metrics::GoawayKind;
use crate::migration::PeerAddress;
use crate::request::{Arrival, serve_request};
use crate::stamp::Stamp;
use crate::{ConnectionInfo, HttpService, Metrics, ResponseBody};

/// What every connection of a server shares.
#[derive(Debug)]
pub(crate) struct ConnectionSettings {
    pub server_id: ServerId,
    pub server_name: Arc<str>,
    pub limits: ConnectionLimits,
    /// Accept connections in 0.5-RTT, so that early data is served before the handshake ends.
    pub zero_rtt: bool,
    pub early: EarlySettings,
    pub metrics: Metrics,
    /// The fields every response carries (server ID, load report).
    pub stamp: Arc<Stamp>,
}

/// Completes the handshake of `incoming`, then serves the connection until it closes.
pub(crate) async fn serve_connection<S, B>(
    incoming: quinn::Incoming,
    settings: Arc<ConnectionSettings>,
    drain: DrainReceiver,
    service: S,
) where
    S: HttpService<B>,
    B: ResponseBody,
{
    let (quic, handshake) = match accept(incoming, settings.zero_rtt).await {
        Ok(accepted) => accepted,
        Err(err) => {
            settings.metrics.handshake_failed();
            tracing::debug!(%err, "handshake failed");
            return;
        }
    };
    let _active = match handshake.is_confirmed() {
        true => settings.metrics.handshake_completed(),
        // Counted as a handshake when it completes (`Handshake::poll_confirmed`).
        false => settings.metrics.connection_started(),
    };
    let connected_at = Instant::now();
    let h3 = h3::server::builder()
        // h3 sends one grease frame per `create_resolver` stream; a frame per response is waste.
        .send_grease(false)
        .build(h3_quinn::Connection::new(quic.clone()))
        .await;
    let reason = match h3 {
        Ok(h3) => {
            let task = ConnectionTask {
                lifecycle: Lifecycle::new(
                    connected_at,
                    &settings.limits,
                    rand::random_range(-1.0..=1.0),
                ),
                peer: PeerAddress::new(quic.remote_address()),
                quic,
                h3,
                goaway: GoawayState::default(),
                sent_goaway: None,
                requests: JoinSet::new(),
                handshake,
                connected_at,
                requests_accepted: 0,
                server_name: Arc::from(&*settings.server_name),
                settings: settings.clone(),
                service,
                body: PhantomData,
            };
            task.run(drain).await
        }
        Err(err) => {
            tracing::debug!(%err, "HTTP/3 setup failed");
            reason_from_quic(quic.close_reason())
        }
    };
    settings.metrics.connection_closed(reason);
}

/// Accepts `incoming`: in 0.5-RTT if `zero_rtt` (the connection is usable at once, its
/// handshake still running), else once the handshake has completed.
async fn accept(
    incoming: quinn::Incoming,
    zero_rtt: bool,
) -> Result<(quinn::Connection, Handshake), quinn::ConnectionError> {
    if !zero_rtt {
        return Ok((incoming.await?, Handshake::confirmed()));
    }
    let mut connecting = incoming.accept()?;
    // Not before the whole ClientHello is in (it may take several Initials, as a post-quantum
    // key share does): quinn hands a server connection over at once, and connections handed
    // over before their ClientHello was whole never answered a request (e2e_ecmp's
    // split-hello test). Nothing is lost: 0.5-RTT data follows the ServerHello anyway.
    connecting.handshake_data().await?;
    match connecting.into_0rtt() {
        Ok((quic, accepted)) => Ok((quic, Handshake::pending(accepted))),
        // Servers always convert; should quinn ever refuse, wait for the handshake.
        Err(connecting) => Ok((connecting.await?, Handshake::confirmed())),
    }
}

/// Whether a connection's handshake has completed; held requests wait on it.
struct Handshake {
    /// Resolves when the handshake ends (completed or failed); `None` once it has. (Its
    /// output, whether 0-RTT was accepted, is meaningful on clients only.)
    pending: Option<quinn::ZeroRttAccepted>,
    done: tokio::sync::watch::Sender<bool>,
    /// Whether a request has arrived as early data on this connection.
    early_seen: bool,
}

impl Handshake {
    fn confirmed() -> Self {
        Self {
            pending: None,
            done: tokio::sync::watch::Sender::new(true),
            early_seen: false,
        }
    }

    fn pending(accepted: quinn::ZeroRttAccepted) -> Self {
        Self {
            pending: Some(accepted),
            done: tokio::sync::watch::Sender::new(false),
            early_seen: false,
        }
    }

    fn is_confirmed(&self) -> bool {
        self.pending.is_none()
    }

    /// Whether the handshake has ended since the last look, without waiting.
    fn check(&mut self) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        std::pin::Pin::new(self).poll(&mut cx).is_ready()
    }

    /// A receiver that turns `true` when the handshake completes.
    fn waiter(&self) -> HandshakeWaiter {
        self.done.subscribe()
    }
}

impl std::future::Future for Handshake {
    type Output = ();

    /// Pending until the handshake ends; then ready once, and pending forever after.
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let Some(pending) = self.pending.as_mut() else {
            return Poll::Pending;
        };
        std::task::ready!(std::pin::Pin::new(pending).poll(cx));
        self.pending = None;
        // Held requests of a failed handshake are cancelled with their connection.
        self.done.send_replace(true);
        Poll::Ready(())
    }
}

/// `B` is the service's response body type.
struct ConnectionTask<S, B> {
    quic: quinn::Connection,
    h3: h3::server::Connection<h3_quinn::Connection, Bytes>,
    lifecycle: Lifecycle,
    goaway: GoawayState,
    /// h3's record of the lowest GOAWAY identifier sent.
    sent_goaway: Option<StreamId>,
    /// The handlers of the requests in flight; each yields the status it answered with.
    requests: JoinSet<Option<StatusCode>>,
    handshake: Handshake,
    peer: PeerAddress,
    connected_at: Instant,
    requests_accepted: u64,
    /// This connection's own copy, so that requests on different connections (threads)
    /// do not all count references on one shared value.
    server_name: Arc<str>,
    settings: Arc<ConnectionSettings>,
    service: S,
    body: PhantomData<fn() -> B>,
}

impl<S, B> ConnectionTask<S, B>
where
    S: HttpService<B>,
    B: ResponseBody,
{
    /// Serves until the connection closes; returns why it did.
    async fn run(mut self, mut drain: DrainReceiver) -> CloseReason {
        // A drain is noticed two ways: a version check each turn (an atomic load), and a
        // wait that is polled last, only when nothing else is ready, so that a busy
        // connection does not take the wait's lock twice per request.
        self.apply_drain(&mut drain);
        let mut drain_wait = Box::pin(next_drain_change(drain.clone()));
        let mut drain_open = true;
        let mut timer = Box::pin(tokio::time::sleep_until(tokio::time::Instant::now()));
        let mut timer_at = None;
        let reason = loop {
            if drain.has_changed().unwrap_or(false) {
                self.apply_drain(&mut drain);
            }
            let wake = match self.advance().await {
                Ok(wake) => wake,
                Err(reason) => break reason,
            };
            if let Some(at) = wake.filter(|at| timer_at != Some(*at)) {
                timer.as_mut().reset(at.into());
                timer_at = Some(at);
            }
            tokio::select! {
                // Fixed order, cheapest and most frequent first; no random draw per turn.
                biased;
                Some(ended) = self.requests.join_next(), if !self.requests.is_empty() => {
                    self.ended(ended);
                }
                accepted = poll_fn(|cx| self.h3.poll_accept_request_stream(cx)) => match accepted {
                    Ok(Some(stream)) => self.accept(stream),
                    // The client sent GOAWAY and every request has finished.
                    Ok(None) => {
                        self.close();
                        break CloseReason::Peer;
                    }
                    Err(err) => {
                        tracing::debug!(%err, "connection ended");
                        break reason_from_quic(self.quic.close_reason());
                    }
                },
                () = &mut self.handshake, if !self.handshake.is_confirmed() => {
                    self.handshake_ended();
                }
                () = &mut timer, if wake.is_some() => timer_at = None,
                (receiver, changed) = &mut drain_wait, if drain_open => match changed {
                    Ok(()) => drain_wait = Box::pin(next_drain_change(receiver)),
                    // The server is gone; nothing will drain this connection but its limits.
                    Err(()) => drain_open = false,
                },
            }
        };
        if self.peer.observe(self.quic.remote_address()) {
            self.settings.metrics.peer_address_changed();
        }
        reason
    }

    /// Counts a finished request's status; reports a handler that panicked.
    fn ended(&mut self, ended: Result<Option<StatusCode>, JoinError>) {
        match ended {
            Ok(Some(status)) => self.settings.metrics.request_answered(status),
            Ok(None) => {}
            Err(err) if err.is_panic() => tracing::error!(%err, "request handler panicked"),
            Err(_) => {}
        }
    }

    /// Counts the end of a 0.5-RTT connection's handshake: completed, or failed if the
    /// connection is already closed.
    fn handshake_ended(&self) {
        let metrics = &self.settings.metrics;
        match self.quic.close_reason() {
            Some(_) => metrics.handshake_failed(),
            None => metrics.handshake_succeeded(),
        }
    }

    fn apply_drain(&mut self, drain: &mut DrainReceiver) {
        let deadline = *drain.borrow_and_update();
        if let Some(deadline) = deadline {
            let settle = goaway_settle_time(self.quic.rtt());
            self.lifecycle.shutdown(Instant::now(), deadline, settle);
        }
    }

    /// Carries out the lifecycle's steps until it says wait (`Ok`, with when to wake) or
    /// close (`Err`, with why, the connection closed).
    async fn advance(&mut self) -> Result<Option<Instant>, CloseReason> {
        if !self.lifecycle.is_active() {
            return Ok(None);
        }
        loop {
            let quic = &self.quic;
            let settle = || goaway_settle_time(quic.rtt());
            match self
                .lifecycle
                .next_step(Instant::now(), self.requests.len(), settle)
            {
                Step::Wait(wake) => return Ok(wake),
                Step::SendInitialGoaway => self.send_goaway(GoawayKind::Initial).await?,
                Step::SendFinalGoaway => {
                    self.accept_arrived();
                    self.send_goaway(GoawayKind::Final).await?;
                }
                Step::Close(reason) => {
                    self.close();
                    return Err(reason);
                }
            }
        }
    }

    /// Accepts the request streams that have already arrived, so that the final GOAWAY
    /// admits them instead of rejecting them.
    fn accept_arrived(&mut self) {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        while let Poll::Ready(Ok(Some(stream))) = self.h3.poll_accept_request_stream(&mut cx) {
            self.accept(stream);
        }
    }

    async fn send_goaway(&mut self, kind: GoawayKind) -> Result<(), CloseReason> {
        let id = match kind {
            GoawayKind::Initial => self.goaway.initial(),
            GoawayKind::Final => self.goaway.final_id(),
        };
        let id = StreamId::try_from(id).map_err(|_| CloseReason::Error)?;
        if let Err(err) = self.h3.inner.shutdown(&mut self.sent_goaway, id).await {
            tracing::debug!(%err, "sending GOAWAY failed");
            return Err(reason_from_quic(self.quic.close_reason()));
        }
        self.settings.metrics.goaway_sent(kind);
        Ok(())
    }

    /// Starts a handler for a new request stream, or rejects it if it came after the final GOAWAY.
    fn accept(&mut self, mut stream: h3_quinn::BidiStream<Bytes>) {
        let metrics = &self.settings.metrics;
        if !self.goaway.admit(stream.send_id().into_inner()) {
            let rejected = Code::H3_REQUEST_REJECTED.value();
            stream.stop_sending(rejected);
            stream.reset(rejected);
            metrics.request_rejected();
            return;
        }
        self.requests_accepted += 1;
        // A request stream that arrived before the handshake completed came as 0-RTT: a
        // server reads no 1-RTT packet before then (RFC 9001 section 5.7).
        let early = if self.handshake.is_confirmed() {
            None
        } else if self.handshake.check() {
            self.handshake_ended();
            None
        } else {
            if !self.handshake.early_seen {
                self.handshake.early_seen = true;
                metrics.zero_rtt_connection();
            }
            Some(self.handshake.waiter())
        };
        let peer = self.quic.remote_address();
        if self.peer.observe(peer) {
            metrics.peer_address_changed();
        }
        let info = ConnectionInfo {
            server_id: self.settings.server_id,
            server_name: self.server_name.clone(),
            peer,
            connected_at: self.connected_at,
            request_ordinal: self.requests_accepted,
        };
        let resolver =
            self.h3
                .create_resolver(h3::frame::FrameStream::new(h3::stream::BufRecvStream::new(
                    stream,
                )));
        self.requests.spawn(serve_early_aware(
            resolver,
            self.service.clone(),
            info,
            early,
            self.settings.clone(),
        ));
    }

    /// Closes the connection with H3_NO_ERROR; handlers still running are cancelled.
    fn close(&mut self) {
        self.quic.close(H3_NO_ERROR, b"");
        self.requests.abort_all();
    }
}

/// Serves a request, with what its connection knows about early data.
async fn serve_early_aware<S, B>(
    resolver: crate::request::Resolver,
    service: S,
    info: ConnectionInfo,
    early: Option<HandshakeWaiter>,
    settings: Arc<ConnectionSettings>,
) -> Option<StatusCode>
where
    S: HttpService<B>,
    B: ResponseBody,
{
    let arrival = Arrival {
        early,
        settings: &settings.early,
        metrics: &settings.metrics,
    };
    let stamp = settings.stamp.clone();
    serve_request(resolver, service, info, arrival, stamp).await
}

/// RFC 9114 section 8.1: the error code of a graceful close.
pub(crate) const H3_NO_ERROR: quinn::VarInt = quinn::VarInt::from_u32(0x100);

/// Waits for the server's drain deadline to change; returns the receiver for the next wait,
/// and `Err` once the server is gone.
async fn next_drain_change(mut drain: DrainReceiver) -> (DrainReceiver, Result<(), ()>) {
    let changed = drain.changed().await.map_err(|_| ());
    drain.borrow_and_update();
    (drain, changed)
}

/// Why a connection ended, from quinn's account of it.
fn reason_from_quic(error: Option<quinn::ConnectionError>) -> CloseReason {
    use quinn::ConnectionError::*;
    match error {
        Some(ApplicationClosed(_) | ConnectionClosed(_) | Reset) => CloseReason::Peer,
        Some(TimedOut) => CloseReason::TimedOut,
        _ => CloseReason::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quinn_errors_map_to_close_reasons() {
        use quinn::ConnectionError;
        let app_close = ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: H3_NO_ERROR,
            reason: Bytes::new(),
        });
        assert_eq!(reason_from_quic(Some(app_close)), CloseReason::Peer);
        assert_eq!(
            reason_from_quic(Some(ConnectionError::Reset)),
            CloseReason::Peer
        );
        assert_eq!(
            reason_from_quic(Some(ConnectionError::TimedOut)),
            CloseReason::TimedOut
        );
        assert_eq!(
            reason_from_quic(Some(ConnectionError::LocallyClosed)),
            CloseReason::Error
        );
        assert_eq!(reason_from_quic(None), CloseReason::Error);
    }
}
