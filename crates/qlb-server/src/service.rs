//! What the server runs as a handler: any cloneable tower service from
//! `Request<RequestBody>` to `Response<B>`, where `B` streams.

use http::{Request, Response};
use tower::Service;

use crate::RequestBody;

/// An error of a handler or of a response body, as the server handles them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A handler [`Server::serve`](crate::Server::serve) can run: a cloneable tower `Service`
/// from `Request<`[`RequestBody`]`>` to `Response<B>`, whose errors convert into
/// [`BoxError`]. Implemented for every such service (an axum `Router`, a
/// `tower::service_fn`, ...); there is nothing to implement.
///
/// ```
/// use qlb_server::{HttpService, RequestBody, ResponseBody};
///
/// fn runs_on_qlb<S: HttpService<B>, B: ResponseBody>(_: &S) {}
/// runs_on_qlb(&axum::Router::new());
/// runs_on_qlb(&tower::service_fn(|_: http::Request<RequestBody>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
/// }));
/// ```
pub trait HttpService<B>:
    Service<
        Request<RequestBody>,
        Response = Response<B>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> HttpService<B> for S
where
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
}

/// A response body the server can stream: `Send`, with `Send` chunks and errors that
/// convert into [`BoxError`]. Implemented for every such `http_body::Body`.
///
/// ```
/// fn streams<B: qlb_server::ResponseBody>() {}
/// streams::<axum::body::Body>();
/// streams::<String>();
/// ```
pub trait ResponseBody:
    http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> ResponseBody for B
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
}
