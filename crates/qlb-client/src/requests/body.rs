//! The response body: DATA frames, then trailers, streamed from the request stream as they
//! arrive, within the request's deadline.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use h3::error::Code;
use http_body::Frame;
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use crate::connections::lease::Lease;
use crate::error::Error;

/// The receiving half of a request stream.
pub(crate) type RecvStream = h3::client::RequestStream<h3_quinn::RecvStream, Bytes>;
/// The task streaming a request body out; its error, if any, explains a failed exchange.
pub(crate) type Pump = JoinHandle<Result<(), Error>>;

/// When the request times out, and its timeout (for the error).
pub(crate) type Deadline = (tokio::time::Instant, Duration);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Data,
    Trailers,
    Done,
}

/// A streaming response body: `http_body::Body` with `Bytes` data and [`Error`] errors
/// (the request's timeout covers the body too). The request counts as in flight on its
/// backend and connection until the body ends or is dropped; dropping it early cancels the
/// request stream.
///
/// ```no_run
/// # async fn demo(client: qlb_client::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use http_body_util::BodyExt;
///
/// let response = client.send(http::Request::get("/bytes/1000000").body(String::new())?).await?;
/// let mut body = response.into_body();
/// let mut total = 0;
/// while let Some(frame) = body.frame().await {
///     if let Ok(data) = frame?.into_data() {
///         total += data.len();
///     }
/// }
/// assert_eq!(total, 1_000_000);
/// # Ok(())
/// # }
/// ```
pub struct ResponseBody {
    stream: RecvStream,
    state: State,
    /// A read is pending: h3-quinn has lent the stream to its read future, and touching it
    /// now (stop_sending, id) would panic.
    reading: bool,
    /// The request body still streaming out, stopped when this body goes.
    pump: Option<Pump>,
    lease: Option<Lease>,
    deadline: Option<(Pin<Box<Sleep>>, Duration)>,
}

impl ResponseBody {
    pub(crate) fn new(
        stream: RecvStream,
        pump: Option<Pump>,
        lease: Lease,
        deadline: Option<Deadline>,
    ) -> Self {
        Self {
            stream,
            state: State::Data,
            reading: false,
            pump,
            lease: Some(lease),
            deadline: deadline
                .map(|(at, timeout)| (Box::pin(tokio::time::sleep_until(at)), timeout)),
        }
    }

    /// Asks the server to stop sending, when the stream can be touched; otherwise dropping
    /// it does (quinn stops an unfinished stream it drops).
    fn cancel(&mut self) {
        if !self.reading {
            self.stream.stop_sending(Code::H3_REQUEST_CANCELLED);
        }
    }

    /// The body ended (or failed): the request is no longer in flight.
    fn finish(&mut self, failed: bool) {
        self.state = State::Done;
        if let Some(mut lease) = self.lease.take() {
            if failed {
                lease.failed();
            }
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.state == State::Done {
            return Poll::Ready(None);
        }
        if let Some((sleep, timeout)) = &mut self.deadline {
            if sleep.as_mut().poll(cx).is_ready() {
                let timeout = *timeout;
                self.cancel();
                self.finish(true);
                return Poll::Ready(Some(Err(Error::Timeout(timeout))));
            }
        }
        let polled = loop {
            let step = match self.state {
                State::Data => self.stream.poll_recv_data(cx).map(|data| match data {
                    Ok(Some(mut data)) => {
                        Some(Ok(Some(Frame::data(data.copy_to_bytes(data.remaining())))))
                    }
                    Ok(None) => None,
                    Err(err) => Some(Err(err)),
                }),
                State::Trailers => self
                    .stream
                    .poll_recv_trailers(cx)
                    .map(|trailers| Some(trailers.map(|trailers| trailers.map(Frame::trailers)))),
                State::Done => Poll::Ready(Some(Ok(None))),
            };
            self.reading = step.is_pending();
            match ready!(step) {
                Some(polled) => break polled,
                None => self.state = State::Trailers,
            }
        };
        match polled {
            Ok(Some(frame)) if frame.is_data() => Poll::Ready(Some(Ok(frame))),
            Ok(last) => {
                self.finish(false);
                Poll::Ready(last.map(Ok))
            }
            Err(err) => {
                self.finish(true);
                Poll::Ready(Some(Err(Error::http3(err))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if self.state != State::Done {
            // The caller lost interest: tell the server to stop sending.
            self.cancel();
        }
        if let Some(pump) = &self.pump {
            pump.abort();
        }
    }
}
