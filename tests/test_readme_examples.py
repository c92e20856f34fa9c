"""The README's examples, extracted and executed, so the README cannot drift from the code:
the Python API script, the notebook cells (in a real kernel), the pytest file (through pytester)
and the `gradcheck rule` commands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from procs import GRADCHECK_FORMS, child_env

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def blocks(section: str, lang: str) -> list[str]:
    """The ``lang`` code blocks of a README section (up to the next heading of any level)."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{section}\n")
    nxt = re.search(r"^#{2,3} ", text[start + len(section) + 2 :], re.M)
    body = text[start : start + len(section) + 2 + (nxt.start() if nxt else len(text))]
    found = [code for kind, code in _FENCE.findall(body) if kind == lang]
    assert found, f"no {lang} block in {section}"
    return found


def test_python_api_examples(tmp_path: Path) -> None:
    code = "\n".join(blocks("## Python API", "python"))
    (tmp_path / "train.py").write_text(code)
    r = subprocess.run(
        [sys.executable, "train.py"],
        cwd=tmp_path, capture_output=True, text=True, env=child_env(), timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "['detach']\nFalse\ntrain.py:12\n"
    (shown,) = blocks("## Python API", "text")
    assert r.stderr.lstrip("\n").startswith(shown), r.stderr  # the README shows the real report
    assert r.stderr.endswith(
        "gradcheck: no gradient problems in train.py (1 of 1 backward call checked)\n"
    )


def test_jupyter_example_in_a_real_kernel(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    setup = blocks("## Python API", "python")[0].split("\n\ndef train_step")[0]
    cells = [setup, *(c.rstrip("\n") for c in blocks("### Jupyter", "ipython"))]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    (out,) = nb.cells[2].outputs
    text = out.data["text/plain"]
    assert "✗ detach GC101  model.0.* (2 tensors) got no gradient" in text
    assert "    <cell 3>:2 in <module>\n      h = model[0](x).detach()\n" in text


def test_pytest_plugin_example(pytester: pytest.Pytester) -> None:
    (code,) = blocks("### pytest plugin", "python")
    path = code.splitlines()[0].removeprefix("# ")
    pytester.makefile(".py", **{path.removesuffix(".py"): code})
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=3)
    # the failure shown in the README: the same file with a .detach() in test_step
    broken = code.replace(
        "        model(x).pow(2).mean().backward()\n\n\ndef test_step_function",
        "        h = model[0](x).detach()\n        model[2](h).pow(2).mean().backward()\n\n\n"
        "def test_step_function",
        1,
    )
    assert broken != code
    pytester.makefile(".py", **{path.removesuffix(".py"): broken})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    (shown,) = blocks("### pytest plugin", "text")
    # pytest pads the test's title with underscores to the terminal's width
    shown_lines = [
        f"*_ {ln.strip('_ ')} _*" if ln.startswith("_") else ln for ln in shown.splitlines()
    ]
    result.stdout.fnmatch_lines(shown_lines)


def test_rule_commands() -> None:
    (console,) = blocks("### Finding documentation: `gradcheck rule`", "console")
    commands = [line.removeprefix("$ ").split() for line in console.splitlines()]
    assert [c[:2] for c in commands] == [["gradcheck", "rule"]] * 3
    for cmd in commands:
        r = subprocess.run(
            [*GRADCHECK_FORMS["console-script"], *cmd[1:]],
            capture_output=True, text=True, env=child_env(), timeout=60,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(("# GC101 detach", "# GC201 zero_grad_flow", "id ")), r.stdout
