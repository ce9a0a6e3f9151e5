#!/usr/bin/env bash
# Apache Otava in its own virtual environment, for the calibration benchmark's anchor
# (harness/statistics_calibration, config/full.yaml) and its test. apache-otava 0.8.0 pins
# numpy 2.2.0 and scipy < 1.17, which conflict with forgebench's pins, so it cannot share
# .venv; the benchmark runs src/forgebench/harness/calibration/otava_runner.py with this
# environment's interpreter and passes the series as JSON on stdin. Called by
# tools/setup.sh --test (and so by CI); safe to rerun: it installs only what is missing.
#
#   bash tools/otava_env.sh     # creates .venv/otava (FORGEBENCH_OTAVA_ENV overrides)
set -euo pipefail
cd "$(dirname "$0")/.."

env_dir=${FORGEBENCH_OTAVA_ENV:-.venv/otava}
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
check='from importlib.metadata import version; import otava.analysis; assert version("apache-otava") == "0.8.0"'

if [[ ! -x $env_dir/bin/python ]]; then
  "$python" -m venv "$env_dir"
fi
if ! "$env_dir/bin/python" -c "$check" 2>/dev/null; then
  echo "setup: installing apache-otava 0.8.0 into $env_dir"
  "$env_dir/bin/python" -m pip install --quiet --upgrade pip
  "$env_dir/bin/python" -m pip install --quiet -c tools/otava-constraints.txt apache-otava==0.8.0
  "$env_dir/bin/python" -c "$check"
fi
echo "setup: otava ready ($env_dir/bin/python)"
