//! Plain HTTP over a TCP stream, for the children's HTTP endpoints (`qlb serve --metrics`,
//! the load balancer's admin API): one HTTP/1.0 request per connection, so that the answer
//! is never chunked and ends when the server closes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::TestResult;

/// How long one request may take (a debug build on a loaded 2-core machine).
const TIMEOUT: Duration = Duration::from_secs(10);

/// `method path` without a body: the status code and the body of the answer.
pub(crate) fn request(addr: SocketAddr, method: &str, path: &str) -> TestResult<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} http://{addr}{path}: no HTTP header in {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{method} http://{addr}{path}: bad status line in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// `method path`, which must answer 200: the body.
pub(crate) fn ok(addr: SocketAddr, method: &str, path: &str) -> TestResult<String> {
    match request(addr, method, path)? {
        (200, body) => Ok(body),
        (status, body) => Err(format!("{method} http://{addr}{path}: {status} {body}").into()),
    }
}

/// `method path`, which must answer 200 with JSON: the parsed body.
pub(crate) fn json(addr: SocketAddr, method: &str, path: &str) -> TestResult<serde_json::Value> {
    Ok(serde_json::from_str(&ok(addr, method, path)?)?)
}
