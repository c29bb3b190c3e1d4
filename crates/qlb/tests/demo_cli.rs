//! `qlb demo`, the README's main command: no files, no root; it runs the whole system on
//! loopback and exits 0 only when nothing failed. A shortened run keeps every step.

mod support;

use std::process::Command;
use std::time::Duration;

use support::TestResult;
use support::process::run;

#[test]
fn the_demo_passes_with_every_step() -> TestResult {
    let dir = tempfile::tempdir()?;
    let elsewhere = tempfile::tempdir()?;
    let plot = elsewhere.path().join("latency.svg");
    let output = run(
        "qlb demo",
        Command::new(env!("CARGO_BIN_EXE_qlb"))
            .args(["demo", "--duration", "8s", "--histogram"])
            .arg(&plot)
            // No files: it runs from an empty directory.
            .current_dir(dir.path()),
        Duration::from_secs(90),
    )?;
    let stdout = String::from_utf8(output.stdout)?;
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for step in [
        "drained at the load balancer",
        "graceful shutdown",
        "restarted and undrained",
        "decodes codepoints 0 and 1",
        "backends rotated",
        "PASS",
    ] {
        assert!(stdout.contains(step), "missing {step:?}");
    }
    assert!(!stdout.contains("FAIL"));
    let svg = std::fs::read_to_string(&plot)?;
    assert!(svg.starts_with("<svg xmlns="), "{svg}");
    assert!(svg.contains("qlb demo: "), "{svg}");
    assert!(stdout.contains("latency histogram: "), "{stdout}");
    assert_eq!(
        std::fs::read_dir(dir.path())?.count(),
        0,
        "the demo wrote files where it was not asked to"
    );
    Ok(())
}
