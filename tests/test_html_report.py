"""The HTML report (``run --html``, ``show --html``), ``gradcheck show`` and the ``-v`` flow table.

The samples run once per module (in a subprocess, from the repository root so sites read
``sample_scripts/x.py:N``); the pages are parsed with ``html.parser`` and checked for what a user
sees: each finding's kind, rule, parameters and line, one bar per expected tensor with its state,
the cut path naming the cut line, and no resource fetched from the network. A headless Chromium,
where installed, loads the page and reports whether it drew the chart without console errors.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest

from gradcheck_cli.html import render_html
from gradcheck_cli.model import Report

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SCHEMA = json.loads((ROOT / "gradcheck_cli" / "schemas" / "report.schema.json").read_text())


def gradcheck(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    for key in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GRADCHECK_CONFIG", "COLUMNS"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "gradcheck_cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# -- parsing the page ----------------------------------------------------------------------------


@dataclass
class Card:
    kind: str
    rule: str
    site: str
    params: list[str] = field(default_factory=list)
    cut_path: list[tuple[str, str]] = field(default_factory=list)  # (li class, text)


@dataclass
class BarRow:
    step: str
    param: str
    state: str
    finding: str | None
    href: str | None
    text: str = ""


class Page(HTMLParser):
    """The facts of a report page: bars per step, finding cards, and every URL it would load."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.bars: dict[str, list[BarRow]] = {}
        self.cards: list[Card] = []
        self.urls: list[str] = []
        self.verdict = ""
        self._step: str | None = None
        self._bar: BarRow | None = None
        self._li: list[str] | None = None
        self._li_class = ""
        self._in_verdict = False
        self.feed(text)
        self.close()
        self.urls += re.findall(r"url\(\s*['\"]?([^'\")]+)", text)
        self.urls += re.findall(r"@import\s+['\"]?([^'\";]+)", text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        for key in ("src", "href", "data", "poster", "srcset", "action"):
            if key in a and not a[key].startswith("#"):
                self.urls.append(a[key])
        if tag == "div" and "step" in classes:
            self._step = a["data-step"]
            self.bars[self._step] = []
        elif tag == "a" and "bar-row" in classes:
            assert self._step is not None
            self._bar = BarRow(
                self._step, a["data-param"], a["data-state"], a.get("data-finding"), a.get("href")
            )
            self.bars[self._step].append(self._bar)
        elif tag == "article" and "card" in classes:
            self.cards.append(Card(a["data-kind"], a["data-rule"], a["data-site"]))
        elif tag == "a" and "param" in classes:
            self.cards[-1].params.append(a["data-param"])
        elif tag == "li" and self.cards and self._li is None:
            self._li, self._li_class = [], a.get("class", "")
        elif tag == "span" and a.get("id") == "verdict":
            self._in_verdict = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._bar is not None:
            self._bar = None
        elif tag == "li" and self._li is not None:
            if self._li_class in ("loss", "cut", "op", "node", "collapsed", "params"):
                self.cards[-1].cut_path.append(
                    (self._li_class, " ".join("".join(self._li).split()))
                )
            self._li = None
        elif tag == "span":
            self._in_verdict = False

    def handle_data(self, data: str) -> None:
        if self._bar is not None:
            self._bar.text += data
        if self._li is not None:
            self._li.append(data)
        if self._in_verdict:
            self.verdict += data


def assert_self_contained(page: Page) -> None:
    remote = [u for u in page.urls if re.match(r"\s*(https?:)?//", u)]
    assert remote == [], f"the page loads from the network: {remote}"


@dataclass
class Sample:
    json: dict
    html: str
    page: Page
    stderr: str
    returncode: int


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sample]:
    out = tmp_path_factory.mktemp("html")
    found: dict[str, Sample] = {}
    for name in ("detach", "zero_dead_relu", "correct_mlp"):
        j, h = out / f"{name}.json", out / f"{name}.html"
        run = gradcheck("run", "--json", str(j), "--html", str(h), f"sample_scripts/{name}.py")
        text = h.read_text(encoding="utf-8")
        found[name] = Sample(
            json.loads(j.read_text()), text, Page(text), run.stderr, run.returncode
        )
    return found


def check_against_json(s: Sample) -> None:
    """Every finding has a card and every checked tensor of every recorded step a bar."""
    findings = s.json["findings"]
    assert [(c.kind, c.rule) for c in s.page.cards] == [(f["kind"], f["id"]) for f in findings]
    for card, f in zip(s.page.cards, findings, strict=True):
        assert card.params == f["parameters"]
        site = f["site"]
        assert card.site == (f"{site['file']}:{site['line']}" if site else "")
    steps = [st for st in s.json["steps"] if st["checked"]]
    assert sorted(s.page.bars) == sorted(str(st["index"]) for st in steps)
    for st in steps:
        bars = s.page.bars[str(st["index"])]
        assert [(b.param, b.state) for b in bars] == [
            (c["name"], c["state"]) for c in st["checked"]
        ]


def test_detach_page(samples: dict[str, Sample]) -> None:
    s = samples["detach"]
    assert s.returncode == 1, s.stderr
    jsonschema.validate(s.json, SCHEMA)
    check_against_json(s)
    errors = [c for c in s.page.cards if c.kind == "detach"]
    assert len(errors) == 1
    card = errors[0]
    assert card.rule == "GC101"
    assert card.site == "sample_scripts/detach.py:23"
    encoder = [f"model.encoder.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")]
    assert card.params == encoder
    # The cut path: from the loss to the detach line, then the parameters behind it.
    roles = [role for role, _ in card.cut_path]
    assert roles[0] == "loss" and roles[1] == "cut" and roles[-1] == "params"
    assert "sample_scripts/detach.py:39" in card.cut_path[0][1]  # loss.backward()
    assert "sample_scripts/detach.py:23" in card.cut_path[1][1]
    assert ".detach()" in card.cut_path[1][1]
    assert "AddmmBackward0" in [text for role, text in card.cut_path if role == "node"]
    # One bar per expected parameter in every step, the encoder's marked None and linked.
    for bars in s.page.bars.values():
        assert len(bars) == 8
        for b in bars:
            if b.param in encoder:
                assert b.state == "none"
                assert "✗ detach" in b.text
                assert b.href == f"#finding-{s.page.cards.index(card)}"
            else:
                assert b.state == "ok"
    assert s.page.verdict == "1 finding"
    assert '<dd id="exit-status">1</dd>' in s.html
    assert_self_contained(s.page)


def test_dead_relu_page(samples: dict[str, Sample]) -> None:
    s = samples["zero_dead_relu"]
    assert s.returncode == 1, s.stderr
    check_against_json(s)
    (card,) = s.page.cards
    assert (card.kind, card.rule) == ("zero_grad_flow", "GC201")
    assert card.site == "sample_scripts/zero_dead_relu.py:27"
    assert card.params == ["model.fc1.weight", "model.fc1.bias", "model.fc2.weight"]
    op = [text for role, text in card.cut_path if role == "op"]
    assert len(op) == 1 and "ReluBackward0" in op[0]
    assert "sample_scripts/zero_dead_relu.py:27" in op[0]
    states = {b.param: b.state for b in s.page.bars["0"]}
    assert states == {
        "model.fc1.weight": "zero",
        "model.fc1.bias": "zero",
        "model.fc2.weight": "zero",
        "model.fc2.bias": "ok",
    }
    assert_self_contained(s.page)


def test_clean_page(samples: dict[str, Sample]) -> None:
    s = samples["correct_mlp"]
    assert s.returncode == 0, s.stderr
    check_against_json(s)
    assert s.page.cards == []
    assert s.page.verdict == "no gradient problems"
    bars = [b for step in s.page.bars.values() for b in step]
    assert bars and all(b.state == "ok" for b in bars)
    # Every bar has a drawn, non-empty rectangle on the log scale.
    widths = [
        float(w) for w in re.findall(r'aria-label="ok"><rect class="ok" width="([0-9.]+)"', s.html)
    ]
    assert len(widths) == len(bars) and min(widths) > 0
    assert_self_contained(s.page)


def test_no_network_check_catches_a_remote_load() -> None:
    page = Page('<img src="https://example.com/x.png"><style>a{background:url(//cdn/x)}</style>')
    with pytest.raises(AssertionError, match="network"):
        assert_self_contained(page)


# -- gradcheck show ------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [[], ["-v"], ["-q"]], ids=["default", "verbose", "quiet"])
def test_show_prints_what_run_printed(tmp_path: Path, flags: list[str]) -> None:
    report = tmp_path / "r.json"
    run = gradcheck("run", *flags, "--json", str(report), "sample_scripts/detach.py")
    shown = gradcheck("show", *flags, str(report))
    assert run.returncode == shown.returncode == 1
    assert shown.stdout == ""
    assert shown.stderr == run.stderr
    assert "detach GC101" in shown.stderr


def test_verbose_flow_table(samples: dict[str, Sample], tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    report.write_text(json.dumps(samples["detach"].json))
    shown = gradcheck("show", "-v", str(report))
    lines = shown.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("gradient flow"))
    table = lines[start + 1 : start + 13]
    assert table[0].strip() == "model.encoder.0"
    assert re.fullmatch(r"\s+weight\s+✗ none \(detach\)", table[1])
    assert table[6].strip() == "model.decoder.0"
    assert re.fullmatch(r"\s+weight [▏▎▍▌▋▊▉█]+\s+0\.0199", table[7])
    assert re.fullmatch(r"\s+bias\s+[▏▎▍▌▋▊▉█]+\s+0\.107", table[-1])


def test_show_html_matches_run_html_and_needs_no_torch(
    samples: dict[str, Sample], tmp_path: Path
) -> None:
    report = tmp_path / "r.json"
    report.write_text(json.dumps(samples["detach"].json))
    out = tmp_path / "again.html"
    # torch made unimportable: `show` must not need it.
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('no torch here')\n")
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(tmp_path)}
    shown = subprocess.run(
        [sys.executable, "-m", "gradcheck_cli", "show", "--html", str(out), str(report)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 1 and "Traceback" not in shown.stderr, shown.stderr
    assert out.read_text(encoding="utf-8") == samples["detach"].html


def test_show_reads_a_format_1_0_report(samples: dict[str, Sample], tmp_path: Path) -> None:
    """A report written before format 1.1 (no path, no device) still shows and renders."""
    data = json.loads(json.dumps(samples["detach"].json))
    del data["format_minor"]
    del data["environment"]["device"]
    for f in data["findings"]:
        del f["path"]
    jsonschema.validate(data, SCHEMA)
    report = tmp_path / "old.json"
    report.write_text(json.dumps(data))
    out = tmp_path / "old.html"
    shown = gradcheck("show", "--html", str(out), str(report))
    assert shown.returncode == 1 and "Traceback" not in shown.stderr, shown.stderr
    page = Page(out.read_text(encoding="utf-8"))
    card = next(c for c in page.cards if c.kind == "detach")
    assert [role for role, _ in card.cut_path] == ["loss", "cut", "params"]
    assert "sample_scripts/detach.py:23" in card.cut_path[1][1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such report"),
        ("{", "is not JSON"),
        ('{"format": 1}', "is not a gradcheck report"),
    ],
)
def test_show_bad_input(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    shown = gradcheck("show", str(path))
    assert shown.returncode == 2
    assert shown.stderr.startswith("gradcheck: error: ") and message in shown.stderr
    assert "Traceback" not in shown.stderr


def test_html_written_after_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    run = gradcheck("run", "--html", str(out), str(FIXTURES / "interrupted.py"), cwd=tmp_path)
    assert run.returncode == 130
    page = Page(out.read_text(encoding="utf-8"))
    assert page.verdict == "interrupted"
    assert [c.kind for c in page.cards if c.kind == "detach"] == ["detach"]
    assert "interrupted (Ctrl-C)" in out.read_text(encoding="utf-8")


# -- size ----------------------------------------------------------------------------------------

DEEP = """
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(100)])
head = nn.Linear(8, 1)
opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=1e-3)
for step in range(10):
    opt.zero_grad()
    h = model(torch.randn(4, 8))
    if step % 2:
        h = h.detach()
    head(h).pow(2).mean().backward()
    opt.step()
"""


def test_html_of_a_100_layer_model_stays_small(tmp_path: Path) -> None:
    (tmp_path / "deep.py").write_text(DEEP)
    j, h = tmp_path / "r.json", tmp_path / "r.html"
    run = gradcheck(
        "run", "--steps", "10", "--json", str(j), "--html", str(h), "deep.py", cwd=tmp_path
    )
    assert run.returncode == 1, run.stderr
    report = Report.from_dict(json.loads(j.read_text()))
    assert report.steps_checked == 10
    page = Page(h.read_text(encoding="utf-8"))
    assert len(page.bars) == 10 and all(len(b) == 202 for b in page.bars.values())
    size = h.stat().st_size
    assert size < 2_000_000, f"{size} bytes"
    started = time.perf_counter()
    render_html(report)
    assert time.perf_counter() - started < 2.0


# -- a real browser ------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not on PATH (Debian: apt-get install chromium) — the page was not rendered",
)
def test_page_renders_in_headless_chromium(samples: dict[str, Sample], tmp_path: Path) -> None:
    page = tmp_path / "detach.html"
    page.write_text(samples["detach"].html, encoding="utf-8")
    dom, log = headless_dom(page, tmp_path)
    errors = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert errors == [], "\n".join(errors)
    drawn = re.search(r'data-chart-drawn="(\d+)"', dom)
    assert drawn is not None, "the page's script did not run"
    assert int(drawn.group(1)) == 8  # every bar of the shown backward call has a drawn box


def headless_dom(page: Path, tmp_path: Path) -> tuple[str, str]:
    assert CHROMIUM is not None
    run = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1100,1400",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout, run.stderr


def test_every_state_has_its_mark() -> None:
    """Built from the model alone: ok bars scale, none/zero/frozen each get their own mark."""
    from gradcheck_cli.model import Checked, Finding, ScriptInfo, Site, Step

    checked = [
        Checked("model.a.weight", "ok", 1e-3),
        Checked("model.a.bias", "ok", 1e-1),
        Checked("model.b.weight", "none"),
        Checked("model.b.bias", "zero", 0.0),
        Checked("model.c.weight", "frozen"),
    ]
    site = Site("train.py", 7, "forward", "h = x.detach()")
    finding = Finding(
        "GC101", "detach", "error", "none", ["model.b.weight"], site, [site], [0], "cut", "fix"
    )
    report = Report(
        tool={"name": "gradcheck", "version": "0"},
        environment={"python": "3", "torch": "2"},
        script=ScriptInfo("train.py", ["train.py"], 0),
        config={},
        steps=[Step(0, "Tensor.backward", None, None, checked)],
        findings=[finding],
        steps_seen=1,
        steps_checked=1,
    )
    text = render_html(report)
    page = Page(text)
    rows = re.findall(
        r'<a class="bar-row"[^>]*data-state="(\w+)".*?<rect class="(\w+)" width="([0-9.]+)"',
        text,
        re.S,
    )
    assert [(s, c) for s, c, _ in rows] == [
        ("ok", "ok"),
        ("ok", "ok"),
        ("none", "none"),
        ("zero", "zero"),
        ("frozen", "frozen"),
    ]
    small, large = float(rows[0][2]), float(rows[1][2])
    assert 0 < small < large <= 100  # 1e-3 shorter than 1e-1 on the log scale
    assert [b.text.split()[-1] for b in page.bars["0"]] == ["0.001", "0.1", "detach", "0", "frozen"]
    assert page.bars["0"][2].href == "#finding-0"
    assert 'id="hatch"' in text
