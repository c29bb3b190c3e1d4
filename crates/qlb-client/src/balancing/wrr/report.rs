//! The per-response load report, in the spirit of ORCA's per-call reports: the
//! `qlb-load` response header field, `utilization=0.42, qps=812.5, eps=0.5, in-flight=3`
//! (qlb-server sends it on every response). Weights need `utilization`, `qps` and `eps`;
//! other fields (`in-flight`, for people reading the responses) are ignored, so that
//! servers may report more.

use http::HeaderValue;

/// The response header field a backend reports its load in.
pub(crate) const LOAD_HEADER: &str = "qlb-load";

/// One backend's load as it reported it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct LoadReport {
    /// Busy share of its capacity, 0 to 1 (CPU, or what the application measures).
    pub(crate) utilization: f64,
    /// Requests it answers per second.
    pub(crate) qps: f64,
    /// Errors it answers per second.
    pub(crate) eps: f64,
}

impl LoadReport {
    /// The report in `value`; None unless it holds finite, non-negative `utilization` and
    /// `qps` (a report without them says nothing to weigh by).
    pub(crate) fn parse(value: &HeaderValue) -> Option<Self> {
        let text = value.to_str().ok()?;
        let mut report = Self::default();
        let (mut utilization, mut qps) = (false, false);
        for field in text.split(',') {
            let Some((name, value)) = field.split_once('=') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            let number = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
            };
            match name {
                "utilization" => {
                    report.utilization = number()?;
                    utilization = true;
                }
                "qps" => {
                    report.qps = number()?;
                    qps = true;
                }
                "eps" => report.eps = number()?,
                _ => {}
            }
        }
        (utilization && qps).then_some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &'static str) -> Option<LoadReport> {
        LoadReport::parse(&HeaderValue::from_static(text))
    }

    #[test]
    fn reports_parse_with_unknown_fields_ignored() {
        assert_eq!(
            parse("utilization=0.5, qps=100, eps=2.5, in-flight=3, mem=0.2"),
            Some(LoadReport {
                utilization: 0.5,
                qps: 100.0,
                eps: 2.5,
            })
        );
        assert_eq!(
            parse("qps=1,utilization=0"),
            Some(LoadReport {
                qps: 1.0,
                ..LoadReport::default()
            })
        );
    }

    #[test]
    fn incomplete_or_bad_reports_are_refused() {
        for bad in [
            "",
            "qps=100",
            "utilization=0.5",
            "utilization=-1, qps=1",
            "utilization=NaN, qps=1",
            "utilization=inf, qps=1",
            "utilization=0.5, qps=x",
            "utilization=0.5, qps=1, eps=-2",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
