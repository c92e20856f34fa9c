"""The Python API as a user runs it: ``python my_script.py`` with ``gradcheck_cli.watch()``.

Scripts run in a child process, so ``sys.argv[0]`` is the user's script (the case `gradcheck run`
never sees) and the report is what the user reads on stderr.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from procs import GRADCHECK_FORMS, child_env
from test_engine import PATCHED

import gradcheck_cli
from gradcheck_cli.api import GradcheckError

HEADER = """\
import torch
from torch import nn
import gradcheck_cli

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
x = torch.randn(3, 4)
"""


def _script(tmp_path: Path, body: str, name: str = "my_script.py") -> tuple[Path, str]:
    text = HEADER + textwrap.dedent(body)
    path = tmp_path / name
    path.write_text(text)
    return path, text


def _line(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


def _python(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )


def test_detach_in_a_function_of_a_plain_python_script(tmp_path: Path) -> None:
    _, text = _script(
        tmp_path,
        """
        def forward(x):
            h = model[0](x).detach()  # BUG
            return model[2](torch.tanh(h))

        with gradcheck_cli.watch() as gc:
            forward(x).sum().backward()
        print([(f.kind, f.parameters, f.site.display) for f in gc.report.findings], gc.report.ok)
        """,
    )
    r = _python(tmp_path, "my_script.py")
    assert r.returncode == 0, r.stderr
    bug = _line(text, "# BUG")
    assert r.stdout.strip() == (
        f"[('detach', ['model.0.weight', 'model.0.bias'], 'my_script.py:{bug}')] False"
    )
    assert "gradcheck: 1 finding in my_script.py (1 of 1 backward call checked)" in r.stderr
    assert "✗ detach GC101  model.0.* (2 tensors) got no gradient" in r.stderr
    assert f"    my_script.py:{bug} in forward\n      h = model[0](x).detach()  # BUG" in r.stderr
    assert "\x1b[" not in r.stderr


def test_module_level_model_named_by_its_variable(tmp_path: Path) -> None:
    _, text = _script(
        tmp_path,
        """
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.enc = nn.Linear(4, 8)
                self.head = nn.Linear(8, 1)

            def forward(self, x):
                return self.head(self.enc(x))

        net = Net()
        with gradcheck_cli.watch() as gc:
            out = net(x).detach()  # BUG
            loss = (out * net.head.weight.sum()).sum()
            loss.backward()
        for f in gc.report.findings:
            print(f.kind, f.parameters, f.site.display if f.site else None)
        """,
    )
    r = _python(tmp_path, "my_script.py")
    bug = _line(text, "# BUG")
    assert r.stdout.splitlines() == [
        f"detach ['net.enc.weight', 'net.enc.bias', 'net.head.bias'] my_script.py:{bug}"
    ], r.stderr


def test_clean_step_prints_no_problems(tmp_path: Path) -> None:
    _script(
        tmp_path,
        """
        with gradcheck_cli.watch() as gc:
            model(x).sum().backward()
        print(gc.report.ok, gc.report.findings, '"findings": []' in gc.report.to_json())
        """,
    )
    r = _python(tmp_path, "my_script.py")
    assert r.stdout.strip() == "True [] True", r.stderr
    assert (
        r.stderr
        == "gradcheck: no gradient problems in my_script.py (1 of 1 backward call checked)\n"
    )


def test_raise_on_findings_message_is_the_report(tmp_path: Path) -> None:
    _, text = _script(
        tmp_path,
        """
        with gradcheck_cli.watch(raise_on_findings=True, show=False):
            with torch.no_grad():  # BUG
                h = model[0](x)
            model[2](h).sum().backward()
        """,
    )
    r = _python(tmp_path, "my_script.py")
    assert r.returncode == 1
    bug = _line(text, "# BUG")
    tail = r.stderr[r.stderr.index("gradcheck_cli.api.GradcheckError: ") :]
    assert tail.startswith("gradcheck_cli.api.GradcheckError: gradcheck: 1 finding in my_script.py")
    assert "no_grad GC103  model.0.* (2 tensors) got no gradient" in tail
    assert f"my_script.py:{bug} in <module>" in tail
    assert r.stderr.count("1 finding in") == 1  # raised, not also printed


def test_config_file_and_keyword_keys(tmp_path: Path) -> None:
    (tmp_path / "gc.yaml").write_text('allow_none: ["model.0.*"]\n')
    _script(
        tmp_path,
        """
        def step():
            model[2](torch.tanh(model[0](x).detach())).sum().backward()

        with gradcheck_cli.watch(config="gc.yaml", show=False) as a:
            step()
        with gradcheck_cli.watch(allow_none=["model.0.weight", "model.0.bias"], show=False) as b:
            step()
        with gradcheck_cli.watch(show=False) as c:
            step()
        with gradcheck_cli.watch(fail_on="never", show=False) as d:
            step()
        print(a.report.ok, b.report.ok, c.report.ok, d.report.ok, [f.kind for f in d.findings])
        """,
    )
    r = _python(tmp_path, "my_script.py")
    assert r.stdout.strip() == "True True False True ['detach']", r.stderr
    (tmp_path / "bad.yaml").write_text("expct: [x]\n")
    bad = _script(tmp_path, "gradcheck_cli.watch(config='bad.yaml')\n", "bad.py")[0]
    r = _python(tmp_path, bad.name)
    assert "gradcheck_cli.config.ConfigError: bad.yaml:1:1: unknown key 'expct'" in r.stderr


def test_check_decorator(tmp_path: Path) -> None:
    _, text = _script(
        tmp_path,
        """
        @gradcheck_cli.check(raise_on_findings=True, show=False)
        def step(cut):
            h = model[0](x)
            if cut:
                h = h.detach()  # BUG
            model[2](torch.tanh(h)).sum().backward()
            return "stepped"

        print(step(False), step.gradcheck.report.ok)
        try:
            step(True)
        except gradcheck_cli.GradcheckError as e:
            print(e.report.findings[0].kind, e.report.findings[0].site.display)
        """,
    )
    r = _python(tmp_path, "my_script.py")
    bug = _line(text, "# BUG")
    assert r.stdout.splitlines() == ["stepped True", f"detach my_script.py:{bug}"], r.stderr


def test_inside_gradcheck_run_the_report_is_printed_once(tmp_path: Path) -> None:
    _, text = _script(
        tmp_path,
        """
        with gradcheck_cli.watch() as gc:
            model[2](torch.tanh(model[0](x).detach())).sum().backward()  # BUG
        print("inner:", [f.kind for f in gc.report.findings])
        """,
    )
    r = subprocess.run(
        [*GRADCHECK_FORMS["console-script"], "run", "my_script.py"],
        cwd=tmp_path, capture_output=True, text=True, env=child_env(), timeout=120,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert r.stdout == "inner: ['detach']\n"
    assert r.stderr.count("✗ detach GC101") == 1
    assert f"my_script.py:{_line(text, '# BUG')} in <module>" in r.stderr


def _patch_state() -> dict[tuple[int, str], tuple[bool, object]]:
    return {(id(o), n): (n in vars(o), vars(o).get(n)) for o, n in PATCHED}


def test_nested_and_repeated_use_restores_patches_exactly() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x = torch.randn(3, 4)
    before = _patch_state()
    modes = torch._C._len_torch_function_stack()
    for _ in range(2):
        with gradcheck_cli.watch(show=False) as outer:
            model(x).sum().backward()
            inner_state = _patch_state()
            with gradcheck_cli.watch(show=False) as inner:
                assert _patch_state() == inner_state  # the inner block installs nothing more
                model[2](model[0](x).detach()).sum().backward()
            assert _patch_state() == inner_state
        assert _patch_state() == before
        assert torch._C._len_torch_function_stack() == modes
        assert [f.kind for f in inner.findings] == ["detach"]
        assert inner.report.steps_seen == 1
        assert [f.kind for f in outer.findings] == ["detach"]
        assert outer.report.steps_seen == 2


def test_error_in_the_block_propagates_and_keeps_the_report() -> None:
    w = gradcheck_cli.watch(raise_on_findings=True, show=False)
    try:
        with w:
            raise KeyError("mine")
    except KeyError:
        pass
    assert w.report is not None and w.report.ok
    assert issubclass(GradcheckError, AssertionError)
