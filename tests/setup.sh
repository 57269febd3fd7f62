#!/usr/bin/env bash
# Everything the test suite needs on a fresh machine, from nothing: Debian's
# Prometheus (the metrics test scrapes with a real one), Debian's stunnel4 (the
# TLS test puts it in front of the embedded broker), a C compiler (the clock-jump
# test builds the library that steps its processes' wall clock) and a fresh virtual
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
command -v cc >/dev/null ||
    apt_install gcc "the clock-jump test builds wallstep.c with it"

python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'

# ray[default] (the dashboard and its job server, for `ray job submit`) goes
# beside the environment, in .venv/ray-default, not into it: importable, it
# makes every node of every test's Ray cluster run the full dashboard agent.
# Only the Ray Job test puts it on its path. The packages are the ones pip
# would add to this environment, at the versions it would pick, so nothing
# the environment has is shadowed.
ray_version=$(.venv/bin/python -c "import ray; print(ray.__version__)")
.venv/bin/pip install -q --dry-run --report .venv/ray-default.json \
    "ray[default]==$ray_version"
.venv/bin/python -c '
import json, sys
for p in json.load(open(sys.argv[1]))["install"]:
    print(p["metadata"]["name"] + "==" + p["metadata"]["version"])
' .venv/ray-default.json >.venv/ray-default.txt
mkdir -p .venv/ray-default  # stays empty if the environment has them already
[ ! -s .venv/ray-default.txt ] || .venv/bin/pip install -q --no-deps --upgrade \
    --target .venv/ray-default -r .venv/ray-default.txt
