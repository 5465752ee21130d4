#!/usr/bin/env bash
# The Python suite of beep-python (issue 13), from any directory: a virtual
# environment in target/python-venv (made once), maturin and pytest from
# the package index, the `beep` tool (for the interop tests), the vortex
# wheel built and installed into the environment, then pytest.
#
#   bash beep-python/run-tests.sh [pytest arguments]
#
# Needs CPython 3.8 or later with pip and venv (PYTHON names another
# interpreter), and cargo.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
venv="$repo/target/python-venv"
python="${PYTHON:-python3}"

echo "== python venv ($venv)"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import pytest" >/dev/null 2>&1 || [ ! -x "$venv/bin/maturin" ]; then
    "$venv/bin/python" -m pip install --quiet "maturin>=1.5,<2" pytest
fi
"$venv/bin/python" --version
"$venv/bin/maturin" --version

echo "== beep tool"
(cd "$repo" && cargo build -p beep-tool --locked)
export BEEP_BIN="$repo/target/debug/beep"

echo "== vortex wheel (maturin develop)"
(
    cd "$here"
    export VIRTUAL_ENV="$venv"
    export PATH="$venv/bin:$PATH"
    unset CONDA_PREFIX
    "$venv/bin/maturin" develop --locked --quiet
)

echo "== pytest"
cd "$here"
# Every wait in the tests has its own timeout; this bounds the whole run,
# and a stuck test prints every thread's stack after 120 s.
timeout --signal=TERM --kill-after=30 900 \
    "$venv/bin/python" -m pytest -o faulthandler_timeout=120 -p no:cacheprovider "$@"
