"""Each command-line option and exit path a user relies on, seen from outside: the exit code,
what is printed, the JSON report. Each test fails when its option stops working."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from test_cli_config import SAMPLES, gradcheck


def _copy(sample: str, tmp_path: Path, name: str = "train.py") -> Path:
    shutil.copy(SAMPLES / sample, tmp_path / name)
    return tmp_path


def _findings(path: Path) -> list[dict]:
    return json.loads(path.read_text())["findings"]


def test_allow_zero_and_allow_none_on_the_command_line(tmp_path: Path) -> None:
    _copy("zero_mask.py", tmp_path)
    assert gradcheck("run", "train.py", cwd=tmp_path).returncode == 1
    allowed = gradcheck(
        "run", "--allow-zero", "model.*", "--json", "r.json", "train.py", cwd=tmp_path
    )
    assert allowed.returncode == 0, allowed.stderr
    assert [f for f in _findings(tmp_path / "r.json") if f["severity"] == "error"] == []
    # --allow-none does not cover an all-zero gradient
    assert gradcheck("run", "--allow-none", "model.*", "train.py", cwd=tmp_path).returncode == 1
    _copy("detach.py", tmp_path)
    assert gradcheck("run", "train.py", cwd=tmp_path).returncode == 1
    assert (
        gradcheck("run", "--allow-none", "model.encoder.*", "train.py", cwd=tmp_path).returncode
        == 0
    )


TINY_GRADIENT = """\
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(2):
    opt.zero_grad()
    loss = (model(torch.randn(8, 4)) * 1e-12).sum()
    loss.backward()
    opt.step()
print("done")
"""


def test_zero_atol_counts_a_tiny_gradient_as_zero(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(TINY_GRADIENT)
    exact = gradcheck("run", "--json", "exact.json", "train.py", cwd=tmp_path)
    assert exact.returncode == 0, exact.stderr
    assert _findings(tmp_path / "exact.json") == []
    loose = gradcheck(
        "run", "--zero-atol", "1e-6", "--json", "loose.json", "train.py", cwd=tmp_path
    )
    assert loose.returncode == 1, loose.stderr
    zero = [f for f in _findings(tmp_path / "loose.json") if f["kind"] == "zero_grad_flow"]
    assert zero and set(zero[0]["parameters"]) == {"model.weight", "model.bias"}
    assert json.loads((tmp_path / "loose.json").read_text())["config"]["zero_atol"] == 1e-6


def test_exit_zero_keeps_the_report(tmp_path: Path) -> None:
    _copy("detach.py", tmp_path)
    run = gradcheck("run", "--exit-zero", "train.py", cwd=tmp_path)
    assert run.returncode == 0
    assert "gradcheck: 1 finding in train.py" in run.stderr
    assert "✗ detach GC101" in run.stderr


def test_quiet_prints_findings_only(tmp_path: Path) -> None:
    _copy("correct_mlp.py", tmp_path)
    loud = gradcheck("run", "train.py", cwd=tmp_path)
    assert "gradcheck: no gradient problems in train.py" in loud.stderr
    quiet = gradcheck("run", "--quiet", "train.py", cwd=tmp_path)
    assert quiet.returncode == 0
    assert "gradcheck" not in quiet.stderr
    _copy("detach.py", tmp_path)
    loud = gradcheck("run", "train.py", cwd=tmp_path)
    assert any(line.startswith("first checked backward:") for line in loud.stderr.splitlines())
    quiet = gradcheck("run", "-q", "train.py", cwd=tmp_path)
    assert quiet.returncode == 1 and "✗ detach GC101" in quiet.stderr
    assert "first checked backward:" not in quiet.stderr


WIDE_DETACH = """\
import torch
from torch import nn

model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(5)])
head = nn.Linear(4, 1)
opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.1)
for _ in range(2):
    opt.zero_grad()
    h = model(torch.randn(8, 4)).detach()
    head(h).sum().backward()
    opt.step()
"""


def test_verbose_lists_every_tensor(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(WIDE_DETACH)
    short = gradcheck("run", "train.py", cwd=tmp_path)
    assert short.returncode == 1, short.stderr
    assert "tensors (10):" not in short.stderr  # ten tensors: only their compact name
    long = gradcheck("run", "--verbose", "train.py", cwd=tmp_path)
    lines = [line.strip() for line in long.stderr.splitlines()]
    listed = next(line for line in lines if line.startswith("tensors (10):"))
    assert "model.4.bias" in listed and listed.count(",") == 9


def test_format_github_and_an_invalid_format(tmp_path: Path) -> None:
    _copy("detach.py", tmp_path)
    run = gradcheck("run", "--format", "github", "train.py", cwd=tmp_path)
    assert run.returncode == 1
    assert any(
        line.startswith("::error file=train.py,line=") for line in run.stderr.splitlines()
    ), run.stderr
    console = gradcheck("run", "train.py", cwd=tmp_path)
    assert "::error" not in console.stderr
    bad = gradcheck("run", "--format", "xml", "train.py", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "gradcheck: error: --format must be 'console' or 'github', not 'xml'"
    )


def test_internal_error_is_exit_3_and_the_script_still_runs(tmp_path: Path) -> None:
    _copy("correct_mlp.py", tmp_path)
    run = gradcheck(
        "run",
        "--json",
        "r.json",
        "train.py",
        cwd=tmp_path,
        env={"GRADCHECK_TEST_FAULT": "checking a backward()"},
    )
    assert run.returncode == 3, run.stderr
    assert run.stdout.splitlines()[-1].startswith("val loss")  # the script's own last line
    assert "Traceback" not in run.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["internal_errors"] == [
        "while checking a backward(): RuntimeError: fault injected by GRADCHECK_TEST_FAULT"
    ]
    assert "gradcheck internal error while checking a backward()" in run.stderr


def test_init_on_a_script_that_never_calls_backward(tmp_path: Path) -> None:
    (tmp_path / "eval.py").write_text("import torch\nprint(torch.ones(2).sum().item())\n")
    run = gradcheck("init", "eval.py", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        "gradcheck: error: eval.py ended (exit status 0) before calling backward(); nothing to list"
    )
    assert not (tmp_path / "gradcheck.yaml").exists()


def test_schema_of_an_unknown_name(tmp_path: Path) -> None:
    run = gradcheck("schema", "sarif", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.strip() == (
        "gradcheck: error: no schema named 'sarif' (choose 'report' or 'config')"
    )
