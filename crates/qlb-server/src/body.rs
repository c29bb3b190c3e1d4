//! The request body handed to handlers: the HTTP/3 request stream's DATA frames, then its
//! trailers, streamed as they arrive.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http_body::Frame;

/// The receiving half of an h3 request stream.
pub(crate) type RecvStream = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// A streaming request body (`http_body::Body` with `Bytes` data), as handlers receive it.
/// axum handlers take it as `axum::body::Body` or any extractor over it.
pub struct RequestBody {
    stream: RecvStream,
    state: BodyState,
    /// A read is under way: h3-quinn holds the QUIC stream inside its read future then, and
    /// its `stop_sending` would panic.
    reading: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyState {
    Data,
    Trailers,
    Done,
}

/// The client reset the request stream, or the connection failed, mid-body.
#[derive(Debug, thiserror::Error)]
#[error("request body: {0}")]
pub struct BodyError(#[source] h3::error::StreamError);

impl RequestBody {
    pub(crate) fn new(stream: RecvStream) -> Self {
        Self {
            stream,
            state: BodyState::Data,
            reading: false,
        }
    }
}

/// A handler that answers without reading the whole request (a GET whose client has not sent
/// the end of its stream yet, say) drops the body early. Dropped as is, quinn would stop the
/// stream with code 0, which clients read as an error; RFC 9114 section 4.1.1 asks for
/// H3_NO_ERROR, so that the complete response counts.
impl Drop for RequestBody {
    fn drop(&mut self) {
        if self.state != BodyState::Done && !self.reading {
            self.stream.stop_sending(h3::error::Code::H3_NO_ERROR);
        }
    }
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody")
            .field("stream", &self.stream.id())
            .finish_non_exhaustive()
    }
}

impl RequestBody {
    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<impl Buf + use<>>, h3::error::StreamError>> {
        self.reading = true;
        let polled = ready!(self.stream.poll_recv_data(cx));
        self.reading = false;
        Poll::Ready(polled)
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            let polled = match self.state {
                BodyState::Data => match ready!(self.poll_data(cx)) {
                    Ok(Some(mut data)) => {
                        Ok(Some(Frame::data(data.copy_to_bytes(data.remaining()))))
                    }
                    Ok(None) => {
                        self.state = BodyState::Trailers;
                        continue;
                    }
                    Err(err) => Err(err),
                },
                BodyState::Trailers => {
                    self.reading = true;
                    let trailers = ready!(self.stream.poll_recv_trailers(cx));
                    self.reading = false;
                    self.state = BodyState::Done;
                    trailers.map(|trailers| trailers.map(Frame::trailers))
                }
                BodyState::Done => Ok(None),
            };
            if polled.is_err() {
                self.state = BodyState::Done;
            }
            return Poll::Ready(polled.map_err(BodyError).transpose());
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == BodyState::Done
    }
}
