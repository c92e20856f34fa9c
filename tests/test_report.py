"""The report model and the console renderer, without torch: a saved report re-renders the same."""

from __future__ import annotations

import io
from pathlib import Path

from gradcheck_cli.model import Finding, Report, ScriptInfo, Site
from gradcheck_cli.report import load_json, make_console, render_console, to_json, write_atomic


def _report() -> Report:
    site = Site("train.py", 23, "forward", "h = self.encoder(x).detach()")
    finding = Finding(
        id="GC101",
        kind="detach",
        severity="error",
        grad_state="none",
        parameters=["model.layers[0].weight", "model.layers[0].bias"],
        site=site,
        stack=[site, Site("train.py", 40, "main", "loss = model(x).sum()")],
        steps=[0, 1],
        message="`.detach()` cut the graph",
        hint="Remove the .detach().",
    )
    return Report(
        tool={"name": "gradcheck", "version": "0.1.0"},
        environment={"python": "3.11", "torch": "2.13.0", "platform": "linux"},
        script=ScriptInfo(path="train.py", argv=["train.py"], exit_code=0),
        config={"steps": 10},
        findings=[finding],
        steps_seen=2,
        steps_checked=2,
    )


def _render(report: Report) -> list[str]:
    out = io.StringIO()
    render_console(report, make_console(file=out, no_color=True, width=100))
    return [line.rstrip() for line in out.getvalue().splitlines()]


def test_console_report_lines() -> None:
    lines = _render(_report())
    assert "gradcheck: 1 finding in train.py (2 of 2 backward calls checked)" in lines
    # `[0]` is user text: it must survive rich markup.
    assert "✗ detach GC101  model.layers[0].* (2 tensors) got no gradient" in lines
    assert "    train.py:23 in forward" in lines
    assert "      h = self.encoder(x).detach()" in lines
    assert "    called from train.py:40 main" in lines
    assert "    backward calls: 0, 1" in lines


def test_saved_report_round_trips_and_renders_the_same(tmp_path: Path) -> None:
    report = _report()
    path = tmp_path / "report.json"
    write_atomic(str(path), to_json(report))
    loaded = load_json(str(path))
    assert loaded.to_dict() == report.to_dict()
    assert _render(loaded) == _render(report)
