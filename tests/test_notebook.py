"""Jupyter: a real kernel (ipykernel, driven by nbclient) runs a notebook using the cell magic and
``watch()``; the outputs are what the user sees under each cell."""

from __future__ import annotations

import os
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

SETUP = """\
import torch
from torch import nn
import gradcheck_cli

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
x = torch.randn(3, 4)"""

CELLS = [
    "%load_ext gradcheck_cli",
    SETUP,
    # cell 3: the magic on a detach bug (line 3 of the cell, counting the %%gradcheck line)
    "%%gradcheck --no-color\nh = model[0](x)\nh = h.detach()\nloss = model[2](torch.tanh(h)).sum()\nloss.backward()",
    # cell 4: the magic on a clean step
    "%%gradcheck\nmodel(x).sum().backward()",
    # cell 5: watch() in a plain cell, a no_grad bug on line 2
    "with gradcheck_cli.watch(no_color=True) as gc:\n    with torch.no_grad():\n        h = model[0](x)\n    model[2](h).sum().backward()",
    # cell 6: colour (the default): still one output, HTML styled, no ANSI codes anywhere
    "with gradcheck_cli.watch():\n    model[2](model[0](x).detach()).sum().backward()",
    "print(_gradcheck.report.ok, gc.report.findings[0].site.display)",
    "%%gradcheck --allow-none 'model.0.*' --expect 'model.*'\nmodel[2](model[0](x).detach()).sum().backward()",
]


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    tmp = tmp_path_factory.mktemp("nb")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    env = {"JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "NO_COLOR": ""}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    os.environ.pop("NO_COLOR")
    try:
        client = nbclient.NotebookClient(
            nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp)}}
        )
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    (tmp / "executed.ipynb").write_text(nbformat.writes(nb))
    return nb.cells


def _texts(cell: Any) -> list[str]:
    out = []
    for o in cell.outputs:
        if o.output_type == "stream":
            out.append(o.text)
        elif "data" in o:
            out.append(o.data.get("text/plain", ""))
    return out


def test_magic_points_at_the_cells_line(executed: list[Any]) -> None:
    cell = executed[2]
    assert cell.execution_count == 3
    assert len(cell.outputs) == 1, cell.outputs
    out = cell.outputs[0]
    assert out.output_type == "display_data"
    text = out.data["text/plain"]
    assert text.startswith("gradcheck: 1 finding in <cell 3> (1 of 1 backward call checked)")
    assert "✗ detach GC101  model.0.* (2 tensors) got no gradient" in text
    assert "    <cell 3>:3 in <module>\n      h = h.detach()\n" in text
    assert "\x1b[" not in text
    assert "&lt;cell 3&gt;:3" in out.data["text/html"]


def test_magic_on_a_clean_step(executed: list[Any]) -> None:
    assert _texts(executed[3]) == [
        "gradcheck: no gradient problems in <cell 4> (1 of 1 backward call checked)\n"
    ]


def test_watch_in_a_plain_cell(executed: list[Any]) -> None:
    texts = _texts(executed[4])
    assert len(texts) == 1, executed[4].outputs
    assert "✗ no_grad GC103  model.0.* (2 tensors) got no gradient" in texts[0]
    assert "    <cell 5>:2 in <module>\n      with torch.no_grad():" in texts[0]
    assert _texts(executed[6]) == ["True <cell 5>:2\n"]


def test_colour_output_is_one_html_output_without_ansi(executed: list[Any]) -> None:
    cell = executed[5]
    assert len(cell.outputs) == 1, cell.outputs
    data = cell.outputs[0].data
    assert "\x1b[" not in data["text/plain"] and "\x1b[" not in data["text/html"]
    assert "<span" in data["text/html"] and "detach" in data["text/html"]


def test_magic_options_as_on_the_cli(executed: list[Any]) -> None:
    (text,) = _texts(executed[7])
    assert text.startswith("gradcheck: no gradient problems in <cell 8>")
