//! Arbitrary text into the configuration parsers, the load balancer's whole file and the
//! cluster file: they must never panic, every refusal must format, and a load balancer file
//! that loads must yield the same shared part as the cluster parser reads from it.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use qlb_lb::config::{ClusterConfig, LbConfig};

/// Relative `*_file` paths resolve here, where nothing exists: reading files is the operating
/// system's business, not the parser's.
const BASE: &str = "/nonexistent/qlb-fuzz";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // An absolute `*_file` path could name a device that never ends (`/dev/zero`): the
    // fuzzer would find the disk, not the parser.
    if text.contains("/dev") || text.contains("/proc") || text.contains("/sys") {
        return;
    }
    let base = Path::new(BASE);
    let cluster = ClusterConfig::from_toml(text, base);
    if let Err(err) = &cluster {
        let _ = err.to_string();
    }
    match LbConfig::from_toml(text, base) {
        Ok(config) => {
            let cluster = cluster.expect("a loadable LB file has a loadable shared part");
            assert_eq!(config.cluster, cluster, "both parsers read one shared part");
            config
                .pool(|_| false)
                .expect("a loaded file builds its pool");
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
