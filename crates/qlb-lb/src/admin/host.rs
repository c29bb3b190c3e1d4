//! The admin API's defence against browsers: a web page on the load balancer's host can make
//! the browser send requests to the API. Through DNS rebinding (the page's own name made to
//! resolve to 127.0.0.1) the requests are same-origin for the browser, so the page reads the
//! answers and sends what it likes; only `Host` (the page's name) betrays them. So `Host`
//! must be a name the API answers to: `localhost`, an IP literal (no DNS, so no rebinding;
//! another page's request to it is cross-origin), or one of `admin.allowed_hosts`. The port
//! is not checked: a browser connects to the port the `Host` names, so it adds nothing, and
//! port forwards (`kubectl port-forward`) rewrite it. A cross-site `POST` carries a good
//! `Host` but the page's `Origin`: POSTs must have none (not a browser) or the API's own,
//! a `Sec-Fetch-Site` (if any) of `same-origin`, and, when they ride on the Basic credentials
//! a browser keeps for the dashboard, the dashboard's own `X-Qlb-Dashboard` header.

use std::net::{Ipv4Addr, Ipv6Addr};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use super::dashboard::DASHBOARD_HEADER;
use crate::control_plane::AdminRefusal;

/// Why a request is refused, with the status and the message to answer.
pub(super) struct Refused {
    pub reason: AdminRefusal,
    pub status: StatusCode,
    pub message: &'static str,
}

/// Refuses a request whose `Host` the API does not answer to, or a state-changing one from
/// another origin. `allowed` holds lowercase `name` or `name:port` entries.
pub(super) fn check(
    method: &Method,
    headers: &HeaderMap,
    allowed: &[String],
) -> Result<(), Refused> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(host), None) => host.to_str().ok().map(str::to_ascii_lowercase),
        _ => None,
    };
    let Some(host) = host.filter(|host| host_allowed(host, allowed)) else {
        return Err(Refused {
            reason: AdminRefusal::Host,
            status: StatusCode::MISDIRECTED_REQUEST,
            message: "Host is not a name of this admin API: use its address, localhost, or a \
                      name listed in admin.allowed_hosts",
        });
    };
    if method == Method::GET || method == Method::HEAD {
        return Ok(());
    }
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let same_origin = match (origins.next(), origins.next()) {
        (None, _) => true,
        (Some(origin), None) => origin
            .to_str()
            .ok()
            .and_then(|origin| {
                let origin = origin.to_ascii_lowercase();
                let authority = origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"))?;
                Some(authority == host)
            })
            .unwrap_or(false),
        (Some(_), Some(_)) => false,
    };
    if !same_origin {
        return Err(cross_site(
            "cross-origin request refused: Origin must be absent or match Host",
        ));
    }
    // Fetch metadata, where the browser sends it, says the same more reliably.
    let site = headers.get(SEC_FETCH_SITE).map(HeaderValue::as_bytes);
    if site.is_some_and(|site| site != b"same-origin" && site != b"none") {
        return Err(cross_site(
            "cross-site request refused: Sec-Fetch-Site must be same-origin",
        ));
    }
    // Basic credentials are what a browser holds for the dashboard and sends by itself, to
    // any page's request: a POST riding on them must prove it is the dashboard's own, with
    // a header no cross-site page can add (a browser sending neither Origin nor fetch
    // metadata would let a form through otherwise).
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(authorization)
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
    if basic && !headers.contains_key(DASHBOARD_HEADER) {
        return Err(cross_site(
            "a POST with Basic credentials must carry X-Qlb-Dashboard: 1",
        ));
    }
    Ok(())
}

/// An `Authorization` header's scheme and credentials (`Bearer tok` -> `("Bearer", "tok")`).
pub(super) fn authorization(value: &HeaderValue) -> Option<(&str, &str)> {
    let (scheme, credentials) = value.to_str().ok()?.split_once(' ')?;
    Some((scheme, credentials.trim()))
}

/// The `Sec-Fetch-Site` request header (fetch metadata; not among `http`'s constants).
const SEC_FETCH_SITE: &str = "sec-fetch-site";

fn cross_site(message: &'static str) -> Refused {
    Refused {
        reason: AdminRefusal::Origin,
        status: StatusCode::FORBIDDEN,
        message,
    }
}

/// Whether the API answers to `host` (lowercase, as the header carries it).
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`.
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || port_ok(port.strip_prefix(':')) => {
                return v6.parse::<Ipv6Addr>().is_ok();
            }
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if port_ok(Some(port)) => name,
            Some(_) => return false,
            None => host,
        },
    };
    name == "localhost"
        || name.parse::<Ipv4Addr>().is_ok()
        || allowed.iter().any(|entry| entry == host || entry == name)
}

fn port_ok(port: Option<&str>) -> bool {
    port.is_some_and(|port| port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    name.clone(),
                    header::HeaderValue::from_str(value).expect("value"),
                )
            })
            .collect()
    }

    #[test]
    fn hosts_are_the_apis_names_and_nothing_else() {
        let allowed = ["lb.internal".to_owned(), "admin.example:8443".to_owned()];
        for good in [
            "127.0.0.1:9901",
            "localhost:9901",
            "LOCALHOST",
            "[::1]:9901",
            "[::1]",
            "10.0.0.5:9901",
            "lb.internal",
            "lb.internal:9901",
            "admin.example:8443",
        ] {
            assert!(host_allowed(&good.to_ascii_lowercase(), &allowed), "{good}");
        }
        for bad in [
            "evil.example:9901",
            "localhost.evil.example",
            "admin.example:9901",
            "127.0.0.1:99999",
            "[::1",
            "[evil]:9901",
            "lb.internal.evil:9901",
            "",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }

    #[test]
    fn posts_need_no_origin_or_the_apis() {
        let host = (header::HOST, "127.0.0.1:9901");
        let status = |method: Method, extra: &[(header::HeaderName, &str)]| {
            let mut all = vec![host.clone()];
            all.extend_from_slice(extra);
            check(&method, &headers(&all), &[]).err().map(|r| r.status)
        };
        assert_eq!(status(Method::POST, &[]), None);
        assert_eq!(
            status(Method::POST, &[(header::ORIGIN, "http://127.0.0.1:9901")]),
            None
        );
        for foreign in ["http://evil.example", "null", "http://127.0.0.1:8080"] {
            assert_eq!(
                status(Method::POST, &[(header::ORIGIN, foreign)]),
                Some(StatusCode::FORBIDDEN),
                "{foreign}"
            );
        }
        for (site, refused) in [
            ("cross-site", true),
            ("same-site", true),
            ("same-origin", false),
            ("none", false),
        ] {
            assert_eq!(
                status(
                    Method::POST,
                    &[(SEC_FETCH_SITE.parse().expect("name"), site)]
                ),
                refused.then_some(StatusCode::FORBIDDEN),
                "{site}"
            );
        }
        let basic = (header::AUTHORIZATION, "Basic OnRvaw==");
        assert_eq!(
            status(Method::POST, std::slice::from_ref(&basic)),
            Some(StatusCode::FORBIDDEN),
            "ambient credentials without the dashboard's header"
        );
        assert_eq!(
            status(
                Method::POST,
                &[
                    basic.clone(),
                    (DASHBOARD_HEADER.parse().expect("name"), "1")
                ]
            ),
            None
        );
        assert_eq!(status(Method::GET, &[basic]), None, "reading is harmless");
        assert_eq!(
            status(Method::POST, &[(header::AUTHORIZATION, "Bearer tok")]),
            None,
            "browsers never send bearer tokens by themselves"
        );
        // Reading is harmless without rebinding, which the Host check stops.
        assert_eq!(
            status(Method::GET, &[(header::ORIGIN, "http://evil.example")]),
            None
        );
        assert_eq!(
            check(&Method::GET, &HeaderMap::new(), &[])
                .err()
                .map(|r| r.status),
            Some(StatusCode::MISDIRECTED_REQUEST),
            "no Host"
        );
    }
}
