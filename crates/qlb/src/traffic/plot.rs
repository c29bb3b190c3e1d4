//! The latency of a run as an HdrHistogram percentile plot (latency against percentile, the
//! percentile axis stretched towards the tail: 90%, 99%, 99.9% ... equally spaced), written
//! as a self-contained SVG (or an HTML page holding it): no script, font or style from
//! anywhere, so it opens offline in any browser.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

/// Points per halving of the distance to 100%, as HdrHistogram's own percentile output.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The plot's size and margins, in SVG user units.
const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 450.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// The most nines the percentile axis shows (99.9999%).
const MAX_NINES: u32 = 6;

/// One point of the plot: the latency (ms) at or below which `percentile` of the requests
/// were answered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Point {
    /// 0 to 100.
    pub percentile: f64,
    /// Milliseconds.
    pub latency_ms: f64,
}

/// The percentile points of a histogram of microseconds, as HdrHistogram iterates them.
pub(crate) fn points(latency_us: &Histogram<u64>) -> Vec<Point> {
    latency_us
        .iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|step| Point {
            percentile: step.quantile_iterated_to() * 100.0,
            latency_ms: step.value_iterated_to() as f64 / 1000.0,
        })
        .collect()
}

/// Writes the plot of `points` (of `requests` answered requests) to `path`: SVG, or an
/// HTML page around it when the name ends in `.html`.
pub(crate) fn write(path: &Path, title: &str, points: &[Point], requests: u64) -> Result<()> {
    let svg = svg(title, points, requests);
    let is_html = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("html"));
    let text = if is_html {
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
             </head>\n<body style=\"margin:16px;font-family:sans-serif\">\n{svg}</body></html>\n",
            escape(title)
        )
    } else {
        svg
    };
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Where percentile `p` sits on the stretched axis: the nines of `1 / (1 - p)`, so 90% is 1,
/// 99% is 2, up to `max`.
fn nines(percentile: f64, max: f64) -> f64 {
    let rest = 1.0 - percentile / 100.0;
    if rest <= 0.0 {
        max
    } else {
        (-rest.log10()).clamp(0.0, max)
    }
}

/// A step for about five labelled latency lines up to `max`: 1, 2 or 5 times a power of 10.
fn step(max: f64) -> f64 {
    let raw = (max / 5.0).max(1e-3);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// The plot as one `<svg>` element.
pub(crate) fn svg(title: &str, points: &[Point], requests: u64) -> String {
    // The axis reaches the nines the sample can tell apart (n requests: about log10 n).
    let max_x = f64::from(
        (requests.max(10) as f64)
            .log10()
            .ceil()
            .clamp(1.0, f64::from(MAX_NINES)) as u32,
    );
    let top_latency = points.iter().map(|p| p.latency_ms).fold(0.0, f64::max);
    let y_step = step(top_latency);
    let max_y = ((top_latency / y_step).ceil() * y_step).max(y_step);
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |nines: f64| LEFT + nines / max_x * plot_w;
    let y = |ms: f64| TOP + plot_h - ms / max_y * plot_h;

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(
        out,
        "<rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#ffffff\"/>\n\
         <text x=\"{LEFT}\" y=\"24\" font-size=\"15\" font-weight=\"bold\">{}</text>",
        escape(title)
    );
    for i in 0..=(max_y / y_step).round() as u32 {
        let ms = f64::from(i) * y_step;
        let py = y(ms);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#e3e6ea\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0,
            trim(ms)
        );
    }
    for n in 0..=max_x as u32 {
        let px = x(f64::from(n));
        let label = match n {
            0 => "0%".to_owned(),
            _ => format!("{}%", 100.0 - 100.0 / 10f64.powi(n as i32)),
        };
        let _ = writeln!(
            out,
            "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#e3e6ea\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            TOP + plot_h,
            TOP + plot_h + 18.0
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text>\
         <text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">\
         latency (ms)</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0,
        TOP + plot_h / 2.0
    );
    let path: Vec<String> = points
        .iter()
        .map(|p| {
            format!(
                "{:.1},{:.1}",
                x(nines(p.percentile, max_x)),
                y(p.latency_ms)
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "<polyline fill=\"none\" stroke=\"#3b6fd8\" stroke-width=\"2\" points=\"{}\"/>",
        path.join(" ")
    );
    out.push_str("</svg>\n");
    out
}

/// A latency label without needless decimals.
fn trim(ms: f64) -> String {
    let text = format!("{ms:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `text` safe inside XML/HTML character data and attributes.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(latencies_us: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut histogram = Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds");
        for value in latencies_us {
            histogram.record(value).expect("in range");
        }
        histogram
    }

    #[test]
    fn points_climb_to_the_slowest_request() {
        // 1,000 requests at 1..=1000 µs: the median near 0.5 ms, the last point the maximum.
        let points = points(&histogram(1..=1000));
        assert!(points.len() > 10, "{points:?}");
        assert!(
            points
                .windows(2)
                .all(|w| w[0].percentile <= w[1].percentile && w[0].latency_ms <= w[1].latency_ms)
        );
        let median = points
            .iter()
            .find(|p| p.percentile >= 50.0)
            .expect("median");
        assert!((median.latency_ms - 0.5).abs() < 0.01, "{median:?}");
        let last = points.last().expect("points");
        assert_eq!(last.percentile, 100.0);
        assert!((last.latency_ms - 1.0).abs() < 0.001, "{last:?}");
    }

    #[test]
    fn the_svg_is_self_contained_and_stretches_the_tail() {
        let points = points(&histogram((1..=10_000).map(|i| 1000 + i / 10)));
        let svg = svg("qlb load: a <test> & more", &points, 10_000);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        for external in ["href", "<script", "<image", "@import", "url("] {
            assert!(!svg.contains(external), "{external}");
        }
        assert!(svg.contains("a &lt;test&gt; &amp; more"), "escaped title");
        // 10,000 requests tell 99.99% apart, no further.
        assert!(svg.contains(">99.99%<"), "{svg}");
        assert!(!svg.contains(">99.999%<"), "{svg}");
        let polyline = svg
            .lines()
            .find(|l| l.starts_with("<polyline"))
            .expect("a curve");
        assert_eq!(polyline.matches(',').count(), points.len());
    }

    #[test]
    fn html_wraps_the_same_plot() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let points = points(&histogram([500, 700, 900]));
        write(&dir.path().join("h.svg"), "t", &points, 3)?;
        write(&dir.path().join("h.html"), "t", &points, 3)?;
        let svg = std::fs::read_to_string(dir.path().join("h.svg"))?;
        let html = std::fs::read_to_string(dir.path().join("h.html"))?;
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains(&svg));
        Ok(())
    }

    #[test]
    fn latency_steps_are_round() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(step(10.0), 2.0));
        assert!(close(step(3.0), 1.0));
        assert!(close(step(0.8), 0.2));
        assert!(close(step(240.0), 50.0));
        assert_eq!(trim(0.2), "0.2");
        assert_eq!(trim(50.0), "50");
    }
}
