#!/usr/bin/env bash
# The whole qlb test suite, as CI runs it (.ci/run calls exactly this script).
# Works on a fresh Debian machine with only the Rust toolchain; installs what tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Third-party QUIC peers the interop tests run against: ngtcp2's gtlsclient/gtlsserver
# (Debian), aioquic (PyPI) and Chromium (Debian), etcd for the fleet tests, iproute2 for
# network namespaces, and clang with libbpf's headers for the XDP program. Installed when
# missing; in CI a test whose peer is still missing fails rather than skipping.
install_peers() {
    local packages=()
    [ -x /usr/bin/gtlsclient ] || packages+=(ngtcp2-client)
    [ -x /usr/sbin/gtlsserver ] || packages+=(ngtcp2-server)
    # The fleet tests run a real etcd.
    command -v etcd >/dev/null || packages+=(etcd-server)
    # The direct-server-return tests build network namespaces with iproute2.
    command -v ip >/dev/null || packages+=(iproute2)
    # The browser tests (e2e_chromium) drive headless Chromium.
    command -v chromium >/dev/null || packages+=(chromium)
    # The XDP program's committed object is checked against its C source (qlb-xdp).
    command -v clang >/dev/null || packages+=(clang)
    command -v llvm-strip >/dev/null || packages+=(llvm)
    [ -f /usr/include/bpf/bpf_helpers.h ] || packages+=(libbpf-dev)
    if [ ${#packages[@]} -gt 0 ]; then
        step "installing ${packages[*]} (Debian)"
        local sudo=()
        [ "$(id -u)" = 0 ] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${packages[@]}" >/dev/null
    fi
    if ! python3 -c 'import aioquic' 2>/dev/null; then
        step "installing aioquic (PyPI)"
        python3 -m pip install --quiet --disable-pip-version-check aioquic
    fi
}
install_peers

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

# Modules read from the bottom up: no import circle inside any crate, but a builder and the
# thing it builds.
step "module import cycles"
for crate in crates/*/; do
    python3 scripts/module_cycles.py "${crate}src" builder:client builder:server >/dev/null \
        || { python3 scripts/module_cycles.py "${crate}src" builder:client builder:server; exit 1; }
done

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
