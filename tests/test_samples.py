"""End to end: every bundled sample script through the CLI, checked on its JSON report.

Each sample declares what a user must see in header comments::

    # gradcheck-expect: KIND NAME ...   (or: clean)
    # gradcheck-exit: N

and marks the responsible line with ``# <- BUG``. The test runs ``python -m gradcheck_cli run``
from the repository root and asserts the kind, the parameter names, the exact ``file:line``, the
exit code, and that the script's stdout and own exit status are what plain ``python`` gives.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

pytestmark = pytest.mark.slow  # many subprocesses: `pytest -m 'not slow'` skips them

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_scripts"
SCHEMA = json.loads((ROOT / "gradcheck_cli" / "schemas" / "report.schema.json").read_text())
ENV = {**os.environ, "NO_COLOR": "1", "PYTHONHASHSEED": "0"}
ENV.pop("PYTHONSAFEPATH", None)


@dataclass
class Expectation:
    script: Path
    kind: str | None  # None: clean
    names: list[str]
    exit_code: int
    bug_line: int | None
    severity: str = "error"
    args: tuple[str, ...] = ()  # extra gradcheck options, e.g. a wider check window


def _expectation(path: Path) -> Expectation:
    text = path.read_text()
    expect = re.search(r"^# gradcheck-expect: (.+)$", text, re.M)
    exit_code = re.search(r"^# gradcheck-exit: (\d+)$", text, re.M)
    assert expect and exit_code, f"{path.name} lacks its gradcheck-expect/gradcheck-exit header"
    words = expect.group(1).split()
    bug_lines = [
        i for i, line in enumerate(text.splitlines(), 1) if line.rstrip().endswith("# <- BUG")
    ]
    if words == ["clean"]:
        assert not bug_lines
        return Expectation(path, None, [], int(exit_code.group(1)), None)
    assert len(bug_lines) == 1, f"{path.name} must mark exactly one line with '# <- BUG'"
    severity = re.search(r"^# gradcheck-severity: (\w+)$", text, re.M)
    args = re.search(r"^# gradcheck-args: (.+)$", text, re.M)
    return Expectation(
        path,
        words[0],
        words[1:],
        int(exit_code.group(1)),
        bug_lines[0],
        severity.group(1) if severity else "error",
        tuple(args.group(1).split()) if args else (),
    )


# Samples launched differently (`# gradcheck-launch: torchrun 2`) have their own tests.
EXPECTATIONS = [
    _expectation(p)
    for p in sorted(SAMPLES.glob("*.py"))
    if not re.search(r"^# gradcheck-launch:", p.read_text(), re.M)
]


def _run_both(
    plain_cmd: list[str], checked_cmd: list[str]
) -> tuple[subprocess.CompletedProcess[str], ...]:
    """Run the plain and the checked command side by side (CI has two cores)."""
    procs = [
        subprocess.Popen(
            c, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for c in (plain_cmd, checked_cmd)
    ]
    results = []
    for cmd, p in zip((plain_cmd, checked_cmd), procs, strict=True):
        out, err = p.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(cmd, p.returncode, out, err))
    return tuple(results)


@pytest.mark.parametrize("exp", EXPECTATIONS, ids=[e.script.stem for e in EXPECTATIONS])
def test_sample_script(exp: Expectation, tmp_path: Path) -> None:
    rel = str(exp.script.relative_to(ROOT))
    report_path = tmp_path / "report.json"
    plain, checked = _run_both(
        [sys.executable, rel],
        [sys.executable, "-m", "gradcheck_cli", "run", *exp.args, "--json", str(report_path), rel],
    )

    assert checked.stdout == plain.stdout, (
        "the script's stdout must be byte-identical to a plain run"
    )
    _assert_report(exp, rel, checked, report_path, plain.returncode)


# The check of the second step reads a big graph (20,000 nodes and more) from `.grad` marks and
# walks it only if they differ from the first walk: forced here for every graph.
_MARKS_FOR_EVERY_GRAPH = (
    "import sys; from gradcheck_cli import backward_check; backward_check._MARKS_FROM_NODES = 0; "
    "from gradcheck_cli.cli import main; sys.argv[0] = 'gradcheck'; main()"
)


@pytest.mark.parametrize("exp", EXPECTATIONS, ids=[e.script.stem for e in EXPECTATIONS])
def test_sample_script_with_every_graph_read_from_marks(exp: Expectation, tmp_path: Path) -> None:
    """The same report when every graph counts as big (what a 100k-node model meets)."""
    rel = str(exp.script.relative_to(ROOT))
    report_path = tmp_path / "report.json"
    cmd = [sys.executable, "-c", _MARKS_FOR_EVERY_GRAPH, "run", *exp.args]
    checked = subprocess.run(
        [*cmd, "--json", str(report_path), rel],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    _assert_report(exp, rel, checked, report_path, None)


def _assert_report(
    exp: Expectation,
    rel: str,
    checked: subprocess.CompletedProcess[str],
    report_path: Path,
    plain_exit: int | None,
) -> None:
    assert checked.returncode == exp.exit_code, checked.stderr
    assert "gradcheck_cli" not in checked.stderr.split("gradcheck:")[0], (
        "our frames leaked into a traceback"
    )

    report = json.loads(report_path.read_text())
    jsonschema.validate(report, SCHEMA)
    assert report["format"] == 1
    if plain_exit is not None:
        assert report["script"]["exit_code"] == plain_exit
    assert report["summary"]["backward_calls"] >= 1
    problems = [f for f in report["findings"] if f["severity"] in ("error", "warning")]
    if exp.kind is None:
        assert problems == [], checked.stderr
        assert "no gradient problems" in checked.stderr
        return
    assert len(problems) == 1, [(f["kind"], f["site"]) for f in problems]
    finding = problems[0]
    assert finding["severity"] == exp.severity
    assert finding["kind"] == exp.kind
    assert finding["site"]["file"] == rel
    assert finding["site"]["line"] == exp.bug_line
    assert "# <- BUG" in finding["site"]["code"]
    if exp.names:
        assert sorted(finding["parameters"]) == sorted(exp.names)
    assert finding["message"] and finding["hint"] and finding["id"].startswith("GC")
    assert f"{rel}:{exp.bug_line}" in checked.stderr, "the console report must point at the line"
