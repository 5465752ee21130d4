#!/usr/bin/env bash
# Every test of the project, from any directory: the Rust workspace
# (unit, property, malformed input, LibVortex interop replay, fuzz corpus
# replay, doc tests, socket tests of both drivers and the tool), then the
# Python package's pytest suite (beep-python/run-tests.sh: a venv in
# target/, maturin and pytest from the package index, the wheel built).
#
#   scripts/test.sh
#
# Needs cargo, and CPython 3.8 or later with pip and venv.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

echo "== cargo test --workspace"
cargo test --workspace --locked

echo "== python suite"
bash beep-python/run-tests.sh
