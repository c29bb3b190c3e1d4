//! The load report a server sends on every response, in the `qlb-load` header field
//! (`utilization=0.42, qps=812.5, eps=0.5, in-flight=3`), for clients that weigh backends
//! by it (qlb-client's `wrr` picker, gRFC A58 style): process CPU over the last second,
//! requests and 5xx answers per second over the last second, requests in flight now. A
//! handler that sets the field itself (its own utilisation measure) is left alone. The
//! rates are pure ([`Rates`]); reading the CPU clock is the only I/O.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// The response header field of the load report every response carries (unless the
/// handler set its own, or [`ServerBuilder::load_reports`](crate::ServerBuilder::load_reports)
/// turned reports off).
///
/// ```
/// assert_eq!(qlb_server::LOAD_HEADER.as_str(), "qlb-load");
/// ```
pub const LOAD_HEADER: HeaderName = HeaderName::from_static("qlb-load");

/// Rates are measured over windows this long.
const WINDOW: Duration = Duration::from_secs(1);

/// Requests and errors per second, and the CPU share, over the last full window.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Rates {
    window_start: Option<Instant>,
    cpu_at_start: Option<Duration>,
    requests: u64,
    errors: u64,
    qps: f64,
    eps: f64,
    utilization: Option<f64>,
}

impl Rates {
    /// Counts a response at `now`; a window that is over first yields its rates. `cpu`
    /// reads the process's CPU time (None where unknown), `cores` the CPUs it may use.
    pub(crate) fn record(
        &mut self,
        error: bool,
        now: Instant,
        cpu: impl FnOnce() -> Option<Duration>,
        cores: f64,
    ) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= WINDOW {
            let seconds = elapsed.as_secs_f64();
            self.qps = self.requests as f64 / seconds;
            self.eps = self.errors as f64 / seconds;
            let cpu_now = cpu();
            self.utilization = match (self.cpu_at_start, cpu_now) {
                (Some(before), Some(after)) => {
                    Some((after.saturating_sub(before).as_secs_f64() / seconds / cores).min(1.0))
                }
                _ => None,
            };
            *self = Self {
                window_start: Some(now),
                cpu_at_start: cpu_now,
                requests: 0,
                errors: 0,
                ..*self
            };
        } else if self.cpu_at_start.is_none() && self.requests == 0 {
            self.cpu_at_start = cpu();
        }
        self.requests += 1;
        self.errors += u64::from(error);
    }

    /// The header value with `in_flight` requests now. Without a CPU measure (the first
    /// window, or no `/proc`), the utilisation is 0, which clients ignore.
    pub(crate) fn header(&self, in_flight: u64) -> HeaderValue {
        let text = format!(
            "utilization={:.4}, qps={:.2}, eps={:.2}, in-flight={in_flight}",
            self.utilization.unwrap_or(0.0),
            self.qps,
            self.eps
        );
        HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static("utilization=0, qps=0"))
    }
}

/// The server's live load: requests in flight and the rates of responses.
#[derive(Debug)]
pub(crate) struct LoadReporter {
    in_flight: AtomicU64,
    rates: Mutex<Rates>,
    cores: f64,
}

impl Default for LoadReporter {
    fn default() -> Self {
        Self {
            in_flight: AtomicU64::new(0),
            rates: Mutex::default(),
            cores: std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
        }
    }
}

/// A request counted in flight until dropped.
pub(crate) struct InFlight<'a>(&'a LoadReporter);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl LoadReporter {
    /// Counts a request in until the guard drops.
    pub(crate) fn started(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Counts a response of `status` and adds the report to `headers`, unless the handler
    /// set one.
    pub(crate) fn report(&self, status: StatusCode, headers: &mut HeaderMap) {
        let mut rates = self.rates.lock().unwrap_or_else(PoisonError::into_inner);
        rates.record(
            status.is_server_error(),
            Instant::now(),
            process_cpu,
            self.cores,
        );
        if !headers.contains_key(LOAD_HEADER) {
            headers.insert(
                LOAD_HEADER,
                rates.header(self.in_flight.load(Ordering::Relaxed)),
            );
        }
    }
}

/// Linux reports process times in these ticks per second (`USER_HZ`, fixed by the ABI).
const USER_HZ: u64 = 100;

/// The process's CPU time (user + system) from `/proc/self/stat`; None elsewhere.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu(&stat)
}

/// Fields 14 and 15 (utime, stime) of a `/proc/<pid>/stat` line; the command name in
/// parentheses may hold spaces, so fields are counted after its closing parenthesis.
fn parse_cpu(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn rates_cover_the_last_full_window() {
        let start = Instant::now();
        let mut rates = Rates::default();
        let cpu = |at: u64| move || Some(Duration::from_millis(at));
        for i in 0..10 {
            rates.record(i < 2, start + SEC / 20 * i, cpu(0), 2.0);
        }
        assert_eq!(
            rates.header(1).to_str().ok(),
            Some("utilization=0.0000, qps=0.00, eps=0.00, in-flight=1")
        );
        // The window ends 2 s in: 10 requests, 2 errors, 1 s of CPU on 2 cores in 2 s.
        rates.record(false, start + 2 * SEC, cpu(1000), 2.0);
        assert_eq!(
            rates.header(3).to_str().ok(),
            Some("utilization=0.2500, qps=5.00, eps=1.00, in-flight=3")
        );
    }

    #[test]
    fn cpu_times_parse_from_proc_stat() {
        let stat = "4242 (my (odd) cmd) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_cpu(stat), Some(Duration::from_secs(3)));
        assert_eq!(parse_cpu("garbage"), None);
        if cfg!(target_os = "linux") {
            assert!(process_cpu().is_some());
        }
    }

    #[test]
    fn a_report_the_handler_set_is_kept() {
        let reporter = LoadReporter::default();
        let mut headers = HeaderMap::new();
        headers.insert(
            LOAD_HEADER,
            HeaderValue::from_static("utilization=0.9, qps=10"),
        );
        let _guard = reporter.started();
        reporter.report(StatusCode::OK, &mut headers);
        assert_eq!(headers[LOAD_HEADER], "utilization=0.9, qps=10");
        let mut fresh = HeaderMap::new();
        reporter.report(StatusCode::OK, &mut fresh);
        assert!(
            fresh[LOAD_HEADER]
                .to_str()
                .is_ok_and(|v| v.ends_with("in-flight=1"))
        );
    }
}
