#!/usr/bin/env bash
# Everything the test suite needs on a fresh machine, from nothing: Debian's
# Prometheus (the metrics test scrapes with a real one), Debian's stunnel4 (the
# TLS test puts it in front of the embedded broker) and a fresh virtual
# environment with the project and its test extra. The README's test command
# runs pytest after it.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
updated=""
apt_install() {
    echo "installing Debian's $1 ($2)" >&2
    [ -n "$updated" ] || $sudo apt-get update -qq
    updated=1
    $sudo apt-get install -y -qq "$1" >/dev/null
}
command -v prometheus >/dev/null ||
    apt_install prometheus "the metrics test scrapes with it"
command -v stunnel4 >/dev/null || command -v stunnel >/dev/null ||
    apt_install stunnel4 "the TLS test terminates TLS with it"

python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
