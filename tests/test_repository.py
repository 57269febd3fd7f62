"""The README's front-door commands and CI stay the same commands."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def front_door() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:sh|bash)?\n(.*?)```", readme, re.S)
    assert block, "the README opens with a code block of commands"
    lines = block.group(1).splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def test_readme_opens_with_the_main_job_and_the_test_command() -> None:
    main_job, tests = front_door()
    assert main_job.startswith("python3 -m venv .venv") and "saga " in main_job
    assert tests == "tests/setup.sh && .venv/bin/python -m pytest"


def test_the_test_command_installs_everything_the_suite_needs() -> None:
    """A fresh machine has nothing installed by hand: the setup the test command
    starts with makes the virtual environment, installs the test extra,
    Debian's Prometheus (the metrics test scrapes with a real one) and stunnel4
    (the TLS test terminates TLS with it), each only when it is missing."""
    script = (ROOT / "tests" / "setup.sh").read_text()
    for needed in ("apt-get install", "python3 -m venv .venv"):
        assert needed in script
    assert "command -v prometheus >/dev/null ||" in script
    assert "apt_install prometheus" in script
    stunnel = "command -v stunnel4 >/dev/null || command -v stunnel >/dev/null ||"
    assert stunnel in script
    assert "apt_install stunnel4" in script
    assert ".venv/bin/pip install -q -e '.[test]'" in script


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    _, tests = front_door()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci
