//! Which failures are retried: a request the server rejected unprocessed (H3_REQUEST_REJECTED)
//! goes once to another backend (another connection when there is one backend); a rejected request whose body already streamed, and any
//! other error, go back to the caller untried elsewhere. The refusing server is a real
//! quinn + h3 server on loopback.

mod support;

use h3::error::Code;
use qlb_client::{BackendList, Error, Http3ErrorKind};
use qlb_testkit::TestResult;
use support::refuser::Refuser;
use support::{Backend, client, fetch, whoami};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_request_is_retried_once_on_another_backend() -> TestResult {
    let refuser = Refuser::start(Code::H3_REQUEST_REJECTED)?;
    let backend = Backend::start("willing", "0021")?;
    let client = client(BackendList::new([refuser.addr, backend.addr])).build()?;
    // Round robin: every other first attempt goes to the refuser.
    for _ in 0..6 {
        assert_eq!(whoami(&client).await?, "willing");
    }
    let snapshot = client.snapshot();
    let refused = snapshot.backend(refuser.addr).ok_or("refuser")?;
    assert_eq!(refuser.requests(), 3);
    assert_eq!((refused.requests, refused.errors), (3, 3));
    assert_eq!(snapshot.retries, 3);
    let willing = snapshot.backend(backend.addr).ok_or("backend")?;
    assert_eq!((willing.requests, willing.errors), (6, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_retried_only_once() -> TestResult {
    let refuser = Refuser::start(Code::H3_REQUEST_REJECTED)?;
    // The only backend: the retry goes to it again, and its rejection is final.
    let client = client(refuser.addr).build()?;
    let err = whoami(&client).await.expect_err("rejected twice");
    assert!(
        matches!(err.downcast_ref::<Error>(), Some(Error::Rejected)),
        "{err}"
    );
    assert_eq!(refuser.requests(), 2);
    assert_eq!(client.snapshot().retries, 1);
    // A rejection means the server is going away (its GOAWAY may not have been read yet):
    // the connection that rejected is retired, and the retry goes out on a new one.
    assert_eq!(refuser.connections(), 2);
    let closes = &client.snapshot().backends[0].connections_closed;
    assert!(
        closes.get(qlb_client::CloseReason::GoAway) >= 1,
        "{closes:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_request_whose_body_streamed_goes_back_to_the_caller() -> TestResult {
    let refuser = Refuser::start(Code::H3_REQUEST_REJECTED)?;
    let client = client(refuser.addr).build()?;
    let request = http::Request::post("/echo").body(String::from("not replayable"))?;
    let err = client.send(request).await.expect_err("rejected");
    assert!(matches!(err, Error::Rejected), "{err}");
    assert!(err.is_unprocessed());
    assert_eq!(refuser.requests(), 1);
    assert_eq!(client.snapshot().retries, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_other_error_goes_back_to_the_caller_untried_elsewhere() -> TestResult {
    let failing = Refuser::start(Code::H3_INTERNAL_ERROR)?;
    let backend = Backend::start("untouched", "0022")?;
    let client = client(BackendList::new([failing.addr, backend.addr])).build()?;
    let mut failed = 0;
    for _ in 0..6 {
        match fetch(&client, "/whoami").await {
            Ok((status, _)) => assert_eq!(status, http::StatusCode::OK),
            Err(err) => {
                let reset = matches!(
                    err.downcast_ref::<Error>(),
                    Some(Error::Http3(err))
                        if err.kind() == Http3ErrorKind::StreamReset { code: Code::H3_INTERNAL_ERROR.value() }
                );
                assert!(reset, "{err}");
                failed += 1;
            }
        }
    }
    assert_eq!((failed, failing.requests()), (3, 3));
    let snapshot = client.snapshot();
    assert_eq!(snapshot.retries, 0);
    let untouched = snapshot.backend(backend.addr).ok_or("backend")?;
    assert_eq!((untouched.requests, untouched.errors), (3, 0));
    Ok(())
}
