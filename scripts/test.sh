#!/usr/bin/env bash
# The whole qlb test suite, as CI runs it (.ci/run calls exactly this script).
# Works on a fresh Debian machine with only the Rust toolchain; installs what tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Formatting and lints are part of the suite wherever the components exist (they do in CI).
if cargo fmt --version >/dev/null 2>&1; then
    step "cargo fmt --check"
    cargo fmt --all --check
elif [ "${CI:-}" = true ]; then
    echo "rustfmt is missing" >&2; exit 1
fi
if cargo clippy --version >/dev/null 2>&1; then
    step "cargo clippy"
    cargo clippy --workspace --all-targets --locked -- -D warnings
elif [ "${CI:-}" = true ]; then
    echo "clippy is missing" >&2; exit 1
fi

# The fuzz targets are a separate crate (cargo fuzz builds them with sanitizer flags);
# make sure they still compile against the current APIs.
step "fuzz targets compile"
cargo check --manifest-path fuzz/Cargo.toml --bins --quiet

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    # nextest does not run doc tests.
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
fi
