"""Root cause, not symptom (issue 13): for each family of lost gradients, scripts of different
shapes (plain script, nn.Module forward, a helper in another file, a training loop with an
optimizer) run through the CLI; the JSON report must name the cause — its kind, every affected
tensor, the exact ``file:line`` — and hold no other error or warning finding.

Each script in ``tests/families/`` declares its expectation like the bundled samples::

    # gradcheck-expect: KIND NAME ...   (or: clean)
    # gradcheck-exit: N
    # gradcheck-args: --expect model.temp   (optional)
    # gradcheck-cause: helpers.py           (optional: the cause line is in that file)

The cause line ends with ``# <- BUG`` (in a helper file: ``# <- BUG <script stem>``); a line
ending with ``# <- MADE`` must be the finding's related line (where a zero mask was made).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from procs import child_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ROOT / "tests" / "families"


@dataclass
class Case:
    script: Path
    kind: str | None
    names: list[str]
    exit_code: int
    cause: Path | None
    line: int | None
    args: list[str]


def _case(path: Path) -> Case:
    text = path.read_text()

    def header(key: str) -> str | None:
        m = re.search(rf"^# gradcheck-{key}: (.+)$", text, re.M)
        return m.group(1).strip() if m else None

    words = (header("expect") or "").split()
    assert words and header("exit") is not None, f"{path.name} lacks its headers"
    cause_file = header("cause")
    cause = path.parent / cause_file if cause_file else path
    marker = f"# <- BUG {path.stem}" if cause_file else "# <- BUG"
    lines = [
        i
        for i, line in enumerate(cause.read_text().splitlines(), 1)
        if line.rstrip().endswith(marker)
    ]
    if words == ["clean"]:
        return Case(path, None, [], int(header("exit") or 0), None, None, [])
    assert len(lines) == 1, f"{cause.name} must mark exactly one line with {marker!r}"
    return Case(
        path,
        words[0],
        words[1:],
        int(header("exit") or 0),
        cause,
        lines[0],
        (header("args") or "").split(),
    )


# Families 5, 7, 9 and 10 have their own module (tests/test_families_5_7_9_10.py).
CASES = [_case(p) for p in sorted(FAMILIES.glob("f*.py")) if not re.match(r"f(5|7|9|10)_", p.name)]


@pytest.mark.parametrize("case", CASES, ids=[c.script.stem for c in CASES])
def test_family_case(case: Case, tmp_path: Path) -> None:
    for library in ("pytorch_lightning", "transformers"):
        if f"import {library}" in (text := case.script.read_text()) or f"from {library}" in text:
            pytest.importorskip(library)
    report_path = tmp_path / "report.json"
    rel = str(case.script.relative_to(ROOT))
    argv = [sys.executable, "-m", "gradcheck_cli", "run", *case.args, "--json", str(report_path)]
    proc = subprocess.run(
        [*argv, rel], cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=300
    )
    shown = f"exit {proc.returncode}\n{proc.stderr[-5000:]}"
    report = json.loads(report_path.read_text())
    assert report["internal_errors"] == [], shown
    loud = [f for f in report["findings"] if f["severity"] in ("error", "warning")]
    for f in report["findings"]:
        file = (f.get("site") or {}).get("file") or ""
        assert "site-packages" not in file and "/torch/" not in file, shown
    if case.kind is None:
        assert loud == [], shown
    else:
        assert [f["kind"] for f in loud] == [case.kind], shown
        finding = loud[0]
        assert sorted(finding["parameters"]) == sorted(case.names), shown
        assert case.cause is not None
        assert finding["site"]["file"] == str(case.cause.relative_to(ROOT)), shown
        assert finding["site"]["line"] == case.line, shown
        made = [
            i
            for i, line in enumerate(case.script.read_text().splitlines(), 1)
            if line.rstrip().endswith("# <- MADE")
        ]
        if made:  # where the zero mask was made: a related line, and said in the message
            assert [r["line"] for r in finding["related"]] == made, shown
            assert "is zero everywhere" in finding["message"], shown
    assert proc.returncode == case.exit_code, shown
