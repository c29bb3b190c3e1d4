//! The committed object is the one its source builds to: `scripts/build-xdp.sh` run again
//! writes the same octets (as cilium/ebpf's `bpf2go` objects are checked), so the program
//! the crate embeds is the reviewed C, not an object nobody can reproduce.

use std::path::Path;
use std::process::Command;

use qlb_testkit::TestResult;
use qlb_testkit::peers::require;

#[test]
fn the_committed_object_is_built_from_its_source() -> TestResult {
    let toolchain = require(
        "clang",
        "clang",
        &["--version"],
        "apt-get install clang llvm libbpf-dev",
    ) && require(
        "llvm-strip",
        "llvm-strip",
        &["--version"],
        "apt-get install llvm",
    ) && (Path::new("/usr/include/bpf/bpf_helpers.h").exists()
        || qlb_testkit::peers::missing("libbpf's headers", "apt-get install libbpf-dev"));
    if !toolchain {
        return Ok(());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir()?;
    let rebuilt = dir.path().join("qlb_xdp.o");
    let output = Command::new("bash")
        .arg(root.join("../../scripts/build-xdp.sh"))
        .arg(&rebuilt)
        .output()?;
    assert!(
        output.status.success(),
        "scripts/build-xdp.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let committed = std::fs::read(root.join("bpf/qlb_xdp.o"))?;
    assert!(
        std::fs::read(&rebuilt)? == committed,
        "bpf/qlb_xdp.o is not what bpf/qlb_xdp.c builds to: run scripts/build-xdp.sh and commit it"
    );
    Ok(())
}
