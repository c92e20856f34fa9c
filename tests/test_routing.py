"""End to end: conditional computation (issue 22) and unused parts of library models (issue 14).

Routed mixture-of-experts layers, LayerDrop and early exit skip modules in some backward calls:
gradcheck decides at the end of the check window, through the CLI's JSON report — info with run
counts for a member that trained in some checked call, a warning for a member of a container that
never ran (an error when ``expect`` lists it). An unused part that a library built (BERT's pooler
under a token-classification head) is a warning that ``gradcheck init`` offers for ``allow_none``;
an unused module the user wrote stays an error.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from test_cli_config import SAMPLES, gradcheck

COUNT = re.compile(r"`(\d+)` ran in (\d+) of (\d+)")


def _run(script: Path, tmp_path: Path, *options: str, code: int = 0) -> list[dict]:
    report = tmp_path / "report.json"
    proc = gradcheck("run", "--json", str(report), *options, str(script), cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    return json.loads(report.read_text())["findings"]


def _copy(sample: str, tmp_path: Path) -> Path:
    return Path(shutil.copy(SAMPLES / sample, tmp_path / sample))


def _line(path: Path, marker: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), 1) if marker in text)


@pytest.mark.parametrize(
    ("sample", "container", "call"),
    [
        ("correct_moe_top1.py", "model.moe.experts", "out[routed] = expert(x[routed])"),
        ("correct_moe_top2.py", "model.moe.experts", "out.index_add_(0, tokens, expert("),
        ("correct_layerdrop.py", "model.layers", "h = layer(h)"),
    ],
)
def test_skipped_members_of_a_user_list_are_info_with_run_counts(
    sample: str, container: str, call: str, tmp_path: Path
) -> None:
    script = _copy(sample, tmp_path)
    findings = _run(script, tmp_path)
    assert [f for f in findings if f["severity"] != "info"] == []
    [info] = [f for f in findings if f["kind"] == "unused_parameter"]
    assert info["severity"] == "info"
    assert f"members of `{container}` (ModuleList) were skipped" in info["message"]
    counts = COUNT.findall(info["message"])
    assert counts, info["message"]
    for member, ran, calls in counts:
        assert 0 < int(ran) < int(calls) == 10
        assert any(p.startswith(f"{container}.{member}.") for p in info["parameters"])
    assert all(p.startswith(f"{container}.") for p in info["parameters"])
    # Where the members run, and the line that built the list.
    assert (info["site"]["file"], info["site"]["line"]) == (sample, _line(script, call))
    assert [r["line"] for r in info["related"]] == [
        _line(script, f"self.{container.rsplit('.', 1)[1]} = ")
    ]


def test_early_exit_is_clean_with_run_counts(tmp_path: Path) -> None:
    script = _copy("correct_early_exit.py", tmp_path)
    findings = _run(script, tmp_path)
    assert [f for f in findings if f["severity"] != "info"] == []
    said = {
        tuple(sorted({p.rsplit(".", 1)[0] for p in f["parameters"]})): f["message"]
        for f in findings
        if f["kind"] == "unused_parameter"
    }
    assert set(said) == {
        ("model.exit1",),
        ("model.block2.0",),
        ("model.exit2",),
        ("model.block3.0", "model.head"),
    }
    for message in said.values():
        ran, calls = map(
            int, re.search(r"got a non-zero gradient in (\d+) of (\d+)", message).groups()
        )
        assert 0 < ran < calls == 10


def test_a_router_that_always_picks_one_expert_is_a_warning(tmp_path: Path) -> None:
    script = _copy("moe_expert_collapse.py", tmp_path)
    findings = _run(script, tmp_path)
    [warning] = [f for f in findings if f["severity"] != "info"]
    assert (warning["kind"], warning["severity"]) == ("unused_parameter", "warning")
    never = ["model.moe.experts.0", "model.moe.experts.1", "model.moe.experts.3"]
    assert {p.rsplit(".", 2)[0] for p in warning["parameters"]} == set(never)
    assert len(warning["parameters"]) == 12
    message = warning["message"]
    assert ", ".join(f"`{m}`" for m in never) + " never ran in any of the 10 checked calls" in (
        message
    )
    assert "other members of `model.moe.experts` (ModuleList) did" in message
    assert "too few" not in message
    assert warning["steps"] == list(range(10))
    assert warning["site"]["line"] == _line(script, "# <- BUG")
    assert [r["line"] for r in warning["related"]] == [_line(script, "self.experts = ")]
    # A warning fails the run only when asked; listed under `expect`, it is an error.
    _run(script, tmp_path, "--fail-on", "warning", code=1)
    strict = _run(script, tmp_path, "--expect", "model.moe.experts.*", code=1)
    assert [f["severity"] for f in strict if f["kind"] == "unused_parameter"] == ["error"]


def test_a_window_too_short_to_tell_says_so(tmp_path: Path) -> None:
    script = _copy("moe_expert_collapse.py", tmp_path)
    findings = _run(script, tmp_path, "--steps", "2")
    [warning] = [f for f in findings if f["severity"] != "info"]
    assert "never ran in any of the 2 checked calls" in warning["message"]
    assert "only 2 checked calls: too few to tell" in warning["message"]


_REPRO = """\
import torch
from torch import nn
torch.manual_seed(0)

class MoE(nn.Module):
    def __init__(self, d=8, n=8):
        super().__init__()
        self.router = nn.Linear(d, n)
        self.experts = nn.ModuleList([nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d)) for _ in range(n)])
        self.spare = nn.ModuleList([nn.Sequential(nn.Linear(d, d), nn.ReLU()) for _ in range(2)])
    def forward(self, x):
        probs = self.router(x).softmax(-1)
        top = probs.argmax(-1)
        out = torch.zeros_like(x)
        for i, e in enumerate(self.experts):
            m = top == i
            if m.any():
                out[m] = e(x[m]) * probs[m, i:i+1]
        return out, (probs.mean(0) ** 2).sum() * len(self.experts)

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.moe = MoE()
        self.head = nn.Linear(8, 1)
    def forward(self, x):
        h, aux = self.moe(x)
        return self.head(h), aux

model = Net()
opt = torch.optim.Adam(model.parameters(), 1e-2)
for step in range(10):
    pred, aux = model(torch.randn(16, 8))
    loss = nn.functional.mse_loss(pred, torch.randn(16, 1)) + 0.01 * aux
    opt.zero_grad(); loss.backward(); opt.step()
"""


def test_a_list_the_user_built_is_not_library_code(tmp_path: Path) -> None:
    """The issue's repro (plus a list the forward never uses), checked on its first call only: the
    skipped experts and the unused list are the user's, whatever the class of their container;
    one call is too few to call the experts dead, and the unused list stays an error."""
    script = tmp_path / "moe.py"
    script.write_text(_REPRO)
    spare = [f"model.moe.spare.{i}.0.{p}" for i in range(2) for p in ("weight", "bias")]
    findings = _run(script, tmp_path, "--steps", "1", code=1)
    assert "library" not in json.dumps(findings)
    errors = [f for f in findings if f["severity"] == "error"]
    assert {f["kind"] for f in errors} == {"unused_parameter"}
    assert sorted(p for f in errors for p in f["parameters"]) == sorted(spare)
    [experts] = [f for f in findings if f["severity"] == "warning"]
    assert "never ran in any of the 1 checked calls" in experts["message"]
    assert "only 1 checked call: too few to tell" in experts["message"]
    # The whole window: every expert ran in some call, the unused list in none.
    window = _run(script, tmp_path, code=1)
    unused = [f for f in window if f["kind"] == "unused_parameter"]
    experts = [f for f in unused if f["parameters"][0].startswith("model.moe.experts.")]
    assert [f["severity"] for f in experts] == ["info"]
    errors = [p for f in unused if f["severity"] == "error" for p in f["parameters"]]
    assert sorted(errors) == sorted(spare)


_LIBRARY = """\
import torch
from torch import nn


class Pooler(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.dense = nn.Linear(d, d)

    def forward(self, h):
        return torch.tanh(self.dense(h[:, 0]))


class Encoder(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.embed = nn.Embedding(20, d)
        self.layer = nn.Linear(d, d)
        self.pooler = Pooler(d)

    def forward(self, ids):
        hidden = torch.relu(self.layer(self.embed(ids)))
        return hidden, self.pooler(hidden)
"""

_TAGGER = """\
import torch
from torch import nn
from fakelib import Encoder


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.classifier = nn.Linear(8, 3)
        self.unused = nn.Linear(8, 8)

    def forward(self, ids):
        hidden, _ = self.encoder(ids)
        return self.classifier(hidden)


torch.manual_seed(0)
model = Tagger()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(3):
    ids = torch.randint(0, 20, (4, 5))
    loss = nn.functional.cross_entropy(model(ids).reshape(-1, 3), torch.randint(0, 3, (20,)))
    opt.zero_grad()
    loss.backward()
    opt.step()
"""


def test_an_unused_part_of_a_library_model_is_a_warning_init_offers(tmp_path: Path) -> None:
    """A token tagger on a library encoder leaves its pooler unused: a warning at the user's call
    of the library model; the unused layer the user wrote stays an error."""
    lib = tmp_path / "site-packages"
    lib.mkdir()
    (lib / "fakelib.py").write_text(_LIBRARY)
    script = tmp_path / "tagger.py"
    script.write_text(
        _TAGGER.replace(
            "from fakelib", f"import sys; sys.path.insert(0, {str(lib)!r})\nfrom fakelib"
        )
    )
    findings = _run(script, tmp_path, code=1)
    by_severity = {f["severity"]: f for f in findings if f["kind"] == "unused_parameter"}
    user, part = by_severity["error"], by_severity["warning"]
    assert user["parameters"] == ["model.unused.weight", "model.unused.bias"]
    assert "library" not in user["message"] + user["hint"]
    assert part["parameters"] == [
        "model.encoder.pooler.dense.weight",
        "model.encoder.pooler.dense.bias",
    ]
    assert part["site"]["line"] == _line(script, "self.encoder(ids)")
    assert "a part of the library model `model.encoder` (Encoder)" in part["message"]
    assert "`model.encoder` (Encoder) is library code" in part["hint"]
    assert part["steps"] == [0, 1, 2]
    # `gradcheck init` offers it for allow_none, and not the user's own unused layer.
    init = gradcheck("init", str(script), cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    written = (tmp_path / "gradcheck.yaml").read_text()
    allow = written.split("allow_none:", 1)[1].split("allow_zero:", 1)[0]
    assert re.findall(r"^  - (\S+)", allow, re.M) == ["model.encoder.pooler.dense.*"]
    assert "allow_none:" in init.stderr
    after = _run(script, tmp_path, "--config", "gradcheck.yaml", code=1)
    assert [f["parameters"] for f in after if f["kind"] == "unused_parameter"] == [
        ["model.unused.weight", "model.unused.bias"]
    ]
    # Listed under `expect`, the library part must learn: an error.
    strict = _run(script, tmp_path, "--expect", "model.encoder.pooler.*", code=1)
    assert {f["severity"] for f in strict if f["kind"] == "unused_parameter"} == {"error"}


_BERT_TAGGER = """\
import torch
from torch import nn
from transformers import BertConfig, BertModel


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        config = BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=16,
        )
        self.bert = BertModel(config)
        self.classifier = nn.Linear(16, 5)

    def forward(self, ids):
        return self.classifier(self.bert(input_ids=ids).last_hidden_state)


torch.manual_seed(0)
model = Tagger()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for step in range(2):
    ids = torch.randint(0, 50, (2, 8))
    loss = nn.functional.cross_entropy(model(ids).reshape(-1, 5), torch.randint(0, 5, (16,)))
    opt.zero_grad()
    loss.backward()
    opt.step()
"""


@pytest.mark.slow
def test_bert_pooler_under_a_token_head_is_a_warning(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    script = tmp_path / "bert_tagger.py"
    script.write_text(_BERT_TAGGER)
    findings = _run(script, tmp_path)
    [part] = [f for f in findings if f["severity"] != "info"]
    assert (part["kind"], part["severity"]) == ("unused_parameter", "warning")
    assert part["parameters"] == ["model.bert.pooler.dense.weight", "model.bert.pooler.dense.bias"]
    assert "`model.bert` (BertModel) is library code" in part["hint"]
    _run(script, tmp_path, "--fail-on", "warning", code=1)


def test_an_unused_part_of_a_library_model_held_by_a_variable_is_a_warning(
    tmp_path: Path,
) -> None:
    lib = tmp_path / "site-packages"
    lib.mkdir()
    (lib / "fakelib.py").write_text(_LIBRARY)
    script = tmp_path / "root.py"
    script.write_text(
        f"import sys\nsys.path.insert(0, {str(lib)!r})\n"
        "import torch\nfrom torch import nn\nfrom fakelib import Encoder\n\n"
        "encoder, head = Encoder(), nn.Linear(8, 3)\n"
        "opt = torch.optim.SGD([*encoder.parameters(), *head.parameters()], lr=0.1)\n"
        "for step in range(2):\n"
        "    hidden, _ = encoder(torch.randint(0, 20, (4, 5)))\n"
        "    loss = head(hidden).logsumexp(-1).mean()\n"
        "    opt.zero_grad()\n"
        "    loss.backward()\n"
        "    opt.step()\n"
    )
    findings = _run(script, tmp_path)
    [part] = [f for f in findings if f["severity"] != "info"]
    assert (part["kind"], part["severity"]) == ("unused_parameter", "warning")
    assert part["parameters"] == ["encoder.pooler.dense.weight", "encoder.pooler.dense.bias"]
    assert "`encoder` (Encoder) is library code" in part["hint"]
