#!/usr/bin/env bash
# Everything the test suite needs on a fresh machine, from nothing: Debian's
# Prometheus (the metrics test scrapes with a real one) and a fresh virtual
# environment with the project and its test extra. The README's test command
# runs pytest after it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus >/dev/null; then
    echo "installing Debian's prometheus (the metrics test scrapes with it)" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq prometheus >/dev/null
fi

python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
