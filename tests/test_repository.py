"""The README's front-door commands and CI stay the same commands."""

from __future__ import annotations

import ast
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


#: The size rule every unit keeps: past it, a module, a function or a class
#: has more than one job and is split along its seams.
LIMITS = {"module": 500, "function": 100, "class": 350}
SOURCES = ("actors", "events", "projections", "benchmarks", "tests")


def oversized(source: str) -> list[str]:
    """Each unit of ``source`` over its limit, with its length in lines."""
    found = []
    lines = source.count("\n")
    if lines > LIMITS["module"]:
        found.append(f"{lines} lines")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            kind = "function"
        elif isinstance(node, ast.ClassDef):
            kind = "class"
        else:
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if length > LIMITS[kind]:
            found.append(f"{kind} {node.name}, {length} lines")
    return found


def test_no_module_function_or_class_outgrows_the_size_rule() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {unit}"
        for package in SOURCES
        for path in sorted((ROOT / package).rglob("*.py"))
        for unit in oversized(path.read_text())
    ]
    assert found == [], f"over {LIMITS}, split along their seams: {found}"


def test_the_size_rule_finds_what_outgrows_it() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(100))
    methods = "".join(
        f"    def m{i}(self) -> None:\n        pass\n" for i in range(175)
    )
    source = f"def long():\n{body}\nclass Big:\n{methods}" + "y = 0\n" * 50
    assert oversized(source) == [
        "503 lines",
        "function long, 101 lines",
        "class Big, 351 lines",
    ]
