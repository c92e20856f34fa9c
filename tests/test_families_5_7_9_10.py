"""End to end: issue 13's families 5 (aliased non-leaf reads), 7 (state the module never
registered), 9 (torch.compile) and 10 (config names), through the CLI on the JSON report.

Each script in ``tests/families/`` declares, as the sample scripts do (``sample_scripts/README.md``)::

    # gradcheck-expect: KIND NAME ...   (or: clean)
    # gradcheck-exit: N
    # gradcheck-args: --expect W        (optional)

and marks the cause with ``# <- BUG`` — in the script, or in the ``userlib_*.py`` helper of the
user's project that it imports. The test asserts the kind, every affected tensor's name, the exact
``file:line``, the exit code, that no other error or warning finding is in the report, and that the
script prints and exits exactly as under plain ``python`` (for torch.compile, its own graph and
graph-break counters, which the scripts print, must read the same).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # two subprocesses per script: `-m 'not slow'` skips them

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ROOT / "tests" / "families"
ENV = {**os.environ, "NO_COLOR": "1", "PYTHONHASHSEED": "0"}
ENV.pop("PYTHONSAFEPATH", None)


@dataclass
class Case:
    script: Path
    kind: str | None  # None: clean
    names: list[str]
    exit_code: int
    bug: tuple[str, int] | None  # (file relative to ROOT, line)
    args: tuple[str, ...]


def _case(path: Path) -> Case:
    text = path.read_text()
    expect = re.search(r"^# gradcheck-expect: (.+)$", text, re.M)
    exit_code = re.search(r"^# gradcheck-exit: (\d+)$", text, re.M)
    args = re.search(r"^# gradcheck-args: (.+)$", text, re.M)
    assert expect and exit_code, f"{path.name} lacks its header"
    words = expect.group(1).split()
    files = [path] + [
        FAMILIES / f"{m}.py" for m in re.findall(r"^from (userlib_\w+) import", text, re.M)
    ]
    bugs = [
        (str(f.relative_to(ROOT)), i)
        for f in files
        for i, line in enumerate(f.read_text().splitlines(), 1)
        if line.rstrip().endswith("# <- BUG")
    ]
    bugs = [b for b in bugs if b[0] == str(path.relative_to(ROOT))] or bugs  # a helper's other bugs
    kind = None if words == ["clean"] else words[0]
    assert (kind is None) == (not bugs) and len(bugs) <= 1, f"{path.name}: one `# <- BUG` line"
    return Case(
        path,
        kind,
        words[1:],
        int(exit_code.group(1)),
        bugs[0] if bugs else None,
        tuple(args.group(1).split()) if args else (),
    )


def _run(case: Case, tmp_path: Path, env: dict[str, str]) -> tuple[dict, str]:
    """Run plain python and gradcheck side by side; compare what the script did; the report."""
    rel = str(case.script.relative_to(ROOT))
    report = tmp_path / "report.json"
    cmds = [
        [sys.executable, rel],
        [sys.executable, "-m", "gradcheck_cli", "run", *case.args, "--json", str(report), rel],
    ]
    procs = [
        subprocess.Popen(
            c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for c in cmds
    ]
    (plain_out, plain_err), (out, err) = (p.communicate(timeout=600) for p in procs)
    assert procs[1].returncode == case.exit_code, err
    assert out == plain_out, "the script's stdout must be identical to a plain run"
    found = json.loads(report.read_text())
    assert found["script"]["exit_code"] == procs[0].returncode, plain_err
    return found, err


def _check(case: Case, report: dict, stderr: str) -> None:
    problems = [f for f in report["findings"] if f["severity"] in ("error", "warning")]
    if case.kind is None:
        assert problems == [], [(f["kind"], f["parameters"], f["site"]) for f in problems]
        return
    assert len(problems) == 1, [(f["kind"], f["parameters"], f["site"]) for f in problems]
    finding = problems[0]
    assert finding["kind"] == case.kind
    assert sorted(finding["parameters"]) == sorted(case.names)
    assert case.bug is not None
    assert (finding["site"]["file"], finding["site"]["line"]) == case.bug
    assert "# <- BUG" in finding["site"]["code"]
    assert f"{case.bug[0]}:{case.bug[1]}" in stderr, "the console report must point at the line"
    for f in report["findings"]:  # nothing ever points into torch or site-packages
        for site in [f["site"], *f["stack"]]:
            assert site is None or "site-packages" not in site["file"], f


def _cases(prefix: str) -> list[Case]:
    return [_case(p) for p in sorted(FAMILIES.glob(f"{prefix}_*.py"))]


EAGER = _cases("f5") + _cases("f7") + _cases("f10")


def _family_7_consequences(finding: dict) -> None:
    for consequence in (
        "not in model.parameters()",
        "not moved by .to(device)",
        "not saved in state_dict()",
        "not unfrozen by requires_grad_(True)",
    ):
        assert consequence in finding["message"]
    assert "nn.Parameter" in finding["hint"] and "register_buffer" in finding["hint"]


def _family_5_alias(finding: dict) -> None:
    read = "`.grad` of `W1` was read (as `p`) at tests/families/userlib_f5.py:10"
    assert read in finding["message"]


# What some scripts' one finding must also say.
EXTRA = {"f7_codebook": _family_7_consequences, "f5_helper_sgd": _family_5_alias}


@pytest.mark.parametrize("case", EAGER, ids=[c.script.stem for c in EAGER])
def test_family_script(case: Case, tmp_path: Path) -> None:
    report, stderr = _run(case, tmp_path, ENV)
    _check(case, report, stderr)
    extra = EXTRA.get(case.script.stem)
    if extra is not None:
        (finding,) = [f for f in report["findings"] if f["severity"] == "error"]
        extra(finding)


def test_family_10_plain_state_is_a_config_name(tmp_path: Path) -> None:
    case = _case(FAMILIES / "f7_codebook.py")
    case.args = ("--expect", "model.codebook", "--expect", "model.*")
    report, stderr = _run(case, tmp_path, ENV)
    _check(case, report, stderr)


def test_family_7_layers_an_optimizer_holds_are_trained() -> None:
    """Forward-Forward keeps its layers in a plain list, each with its own optimizer: trained on
    purpose, even where the run ends before any of them stepped."""
    import torch
    from torch import nn

    import gradcheck_cli

    class Layers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = [nn.Linear(4, 4) for _ in range(2)]
            self.opts = [torch.optim.SGD(layer.parameters(), lr=0.1) for layer in self.layers]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                x = layer(x)
            return x

    with gradcheck_cli.watch(show=False) as session:
        net = Layers()
        net(torch.randn(3, 4)).sum().backward()
    assert [f.kind for f in session.report.findings if f.severity == "error"] == []


# -- family 9: torch.compile ---------------------------------------------------------------------


@cache
def _compile_backend() -> str:
    """inductor where the machine's C++ compiler works (inductor builds C++ on CPU), else aot_eager."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        return "aot_eager"
    probe = subprocess.run(
        [cxx, "-x", "c++", "-shared", "-fPIC", "-o", os.devnull, "-"],
        input="int f() { return 1; }\n",
        capture_output=True,
        text=True,
    )
    return "inductor" if probe.returncode == 0 else "aot_eager"


COMPILED = _cases("f9")


@pytest.mark.parametrize("case", COMPILED, ids=[c.script.stem for c in COMPILED])
def test_family_9_compiled(case: Case, tmp_path: Path) -> None:
    # The headline case runs on the default backend (minutes of C++ compilation on a busy CI
    # machine); the other shapes exercise the same mechanism on aot_eager, in seconds.
    backend = _compile_backend() if case.script.stem == "f9_compiled_no_grad" else "aot_eager"
    started = time.perf_counter()
    report, stderr = _run(case, tmp_path, {**ENV, "GC_COMPILE_BACKEND": backend})
    print(f"{case.script.stem} [{backend}]: {time.perf_counter() - started:.1f}s plain + checked")
    _check(case, report, stderr)
    assert "sys._getframe" not in stderr, "Dynamo traced into gradcheck's own hooks"


def test_family_9_says_what_compilation_hid(tmp_path: Path) -> None:
    """A ``.detach()`` inside a compiled *function* cannot be found in any forward: the report
    says that compilation hid the line (and how to see it) instead of pointing anywhere."""
    script = tmp_path / "compiled_fn.py"
    script.write_text(
        "import torch\nfrom torch import nn\n"
        "torch.manual_seed(0)\n"
        "model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))\n"
        "@torch.compile(backend='aot_eager')\n"
        "def predict(x):\n"
        "    return model[2](model[1](model[0](x)).detach())\n"
        "x, y = torch.randn(16, 4), torch.randn(16, 1)\n"
        "for step in range(2):\n"
        "    model.zero_grad()\n"
        "    (predict(x) - y).pow(2).mean().backward()\n"
    )
    findings = {}
    for disabled in ("0", "1"):
        report = tmp_path / f"report{disabled}.json"
        subprocess.run(
            [sys.executable, "-m", "gradcheck_cli", "run", "--json", str(report), str(script)],
            cwd=tmp_path,
            env={**ENV, "TORCH_COMPILE_DISABLE": disabled},
            capture_output=True,
            timeout=600,
        )
        (findings[disabled],) = json.loads(report.read_text())["findings"]
    hidden = findings["0"]
    assert hidden["parameters"] == ["model.0.weight", "model.0.bias"]
    assert hidden["site"] is None
    assert "compiled by torch.compile" in hidden["message"]
    assert "TORCH_COMPILE_DISABLE=1" in hidden["hint"]
    shown = findings["1"]
    assert (shown["kind"], shown["site"]["line"]) == ("detach", 7)
