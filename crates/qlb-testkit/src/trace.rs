//! Logs for test output.

/// Sends `tracing` events to the test output when `RUST_LOG` is set (e.g.
/// `RUST_LOG=qlb_lb=debug`); quiet otherwise. Safe to call from every test.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
