#!/usr/bin/env bash
# Builds the XDP program from its C source into the object the qlb-xdp crate embeds
# (crates/qlb-xdp/bpf/qlb_xdp.o, committed so that the default build needs no clang).
# Needs clang, llvm-strip and libbpf's headers: apt-get install clang llvm libbpf-dev.
# Usage: scripts/build-xdp.sh [OUTPUT]   (default: the committed object)
# The build is reproducible: the same clang writes the same octets, which the test
# `the_committed_object_is_built_from_its_source` checks.
set -euo pipefail
cd "$(dirname "$0")/../crates/qlb-xdp/bpf"
out="${1:-qlb_xdp.o}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
clang -O2 -g -target bpf -mcpu=v3 \
    -I/usr/include/"$(uname -m)"-linux-gnu \
    -Wall -Wextra -Wno-unused-parameter -Werror \
    -fdebug-prefix-map="$PWD"=. \
    -c qlb_xdp.c -o "$out"
# BTF stays (the loader reads the maps' layouts from it); DWARF goes.
llvm-strip -g "$out"
