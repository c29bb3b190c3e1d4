//! The operators' dashboard at `GET /`: one self-contained HTML page (inline CSS and script,
//! no external assets, so it works offline and behind any firewall) that polls `GET status`
//! every second and shows backends, traffic shares, decision and drop rates, flows, reloads
//! and key codepoints, with drain and undrain buttons.
//!
//! The page is static: everything it shows comes from `/status` under the same token rules
//! as every other endpoint. Its Content-Security-Policy allows only its own inline script
//! (by hash) and style and requests to its own origin, and forbids framing, so the buttons
//! cannot be clickjacked from another site.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

/// The page, as served.
pub(super) const PAGE: &str = include_str!("dashboard.html");

/// The header the page's own requests carry: a cross-site page cannot add it without a CORS
/// preflight, which the API never grants (see [`super::host`]).
pub(super) const DASHBOARD_HEADER: &str = "x-qlb-dashboard";

/// The Content-Security-Policy of the page: its one inline script by SHA-256, inline style,
/// requests to its own origin only, no frames, no forms, no plugins.
static POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    let script = inline_script(PAGE).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, script.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    let policy = format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    // Base64 and the fixed text are visible ASCII: always a valid header value.
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'none'"))
});

/// The text of the page's `<script>` element, which the policy's hash covers.
fn inline_script(page: &str) -> Option<&str> {
    let start = page.find("<script>")? + "<script>".len();
    let end = page[start..].find("</script>")? + start;
    Some(&page[start..end])
}

/// `GET /`: the page, never cached (a new build may change it).
pub(super) async fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::CONTENT_SECURITY_POLICY, POLICY.clone()),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        PAGE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained() {
        // No external script, style, font or image: the page works offline.
        for external in [
            "http://", "https://", "//cdn", "<link", "src=", "@import", "url(",
        ] {
            assert!(!PAGE.contains(external), "{external}");
        }
        assert_eq!(PAGE.matches("<script>").count(), 1, "one inline script");
        // Only relative requests, to the API the page came from.
        assert!(PAGE.contains("fetch(api(\"status\")"));
        assert!(PAGE.contains("fetch(api(`backends/${encodeURIComponent(name)}/${verb}`)"));
        assert!(PAGE.contains("new URL(path, location.origin + location.pathname)"));
        assert!(PAGE.contains("\"X-Qlb-Dashboard\": \"1\""));
    }

    #[test]
    fn updates_touch_only_what_changed() {
        // Rows are created once per backend and kept in a map; cells are written only when
        // their text differs, and data goes in as text, never as markup.
        assert!(PAGE.contains("const rows = new Map()"));
        assert!(PAGE.contains("if (node.textContent !== text) node.textContent = text"));
        assert!(!PAGE.contains("innerHTML"), "no markup from data");
        assert!(!PAGE.contains("outerHTML"));
    }

    #[test]
    fn the_policy_covers_exactly_the_inline_script() {
        let script = inline_script(PAGE).expect("a script element");
        assert!(script.contains("refresh();"));
        let policy = POLICY.to_str().expect("ascii");
        let digest = ring::digest::digest(&ring::digest::SHA256, script.as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        assert!(
            policy.contains(&format!("script-src 'sha256-{hash}'")),
            "{policy}"
        );
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(policy.contains("connect-src 'self'"), "{policy}");
    }
}
