"""Real training code nobody here wrote the libraries of: Hugging Face transformers (GPT-2, BERT,
LLaMA, ViT), peft LoRA, the Lightning Trainer, the HF Trainer, and pytorch/examples-style loops
(DCGAN, Forward-Forward, hogwild), each for 3 steps from random weights of a tiny config.

Every correct script must come out clean (exit 0, no error or warning finding except the one the
case names); every script run with ``--bug`` activates one injected bug, marked ``# BUG`` in the
script, which must be the first finding: its kind, at that exact line, and no other error or
warning finding beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("pytorch_lightning")

pytestmark = [pytest.mark.slow, pytest.mark.realworld]

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"
TIMEOUT_S = 600


@dataclass
class Case:
    script: str
    bug: bool = False
    kind: str | None = None  # the first finding's kind; None: no error/warning finding at all
    names: list[str] = field(default_factory=list)  # tensors the finding must name (a subset)
    severity: str = "error"
    exit_code: int = 0
    info: list[str] = field(default_factory=list)  # kinds of info findings that must be present


CASES = [
    Case("gpt2_lm.py"),
    Case(
        "bert_custom_head.py",
        kind="unused_parameter",
        severity="warning",
        names=["model.bert.pooler.dense.weight", "model.bert.pooler.dense.bias"],
    ),
    Case("llama_lm.py"),
    Case("vit_classifier.py"),
    Case("resnet_zero_init.py", info=["zero_grad_flow"]),
    Case("lora_gpt2.py", info=["zero_grad_flow"]),
    Case("lora_llama.py", info=["zero_grad_flow"]),
    Case("lightning_trainer.py"),
    Case("hf_trainer.py"),
    Case("dcgan.py"),
    Case("forward_forward.py"),
    Case("hogwild.py"),
    # injected bugs, each at its `# BUG` line
    Case(
        "gpt2_lm.py",
        bug=True,
        kind="detach",
        names=["model.transformer.h.0.attn.c_attn.weight"],
        exit_code=1,
    ),
    Case(
        "bert_custom_head.py",
        bug=True,
        kind="no_grad",
        names=["model.bert.encoder.layer.0.output.dense.weight"],
        exit_code=1,
    ),
    Case(
        "llama_lm.py",
        bug=True,
        kind="requires_grad_false",
        names=["model.model.embed_tokens.weight"],
        exit_code=1,
    ),
    Case(
        "vit_classifier.py",
        bug=True,
        kind="python_scalar_roundtrip",
        names=["model.classifier.weight"],
        exit_code=1,
    ),
    Case(
        "resnet_zero_init.py", bug=True, kind="no_grad", names=["model.stem.0.weight"], exit_code=1
    ),
    Case("lora_llama.py", bug=True, kind="detach", exit_code=1),
    Case("lightning_trainer.py", bug=True, kind="detach", exit_code=1),
    Case("dcgan.py", bug=True, kind="detach", names=["netG.0.weight", "netG.2.bias"], exit_code=1),
    Case("hogwild.py", bug=True, kind="no_grad", names=["model.0.weight"], exit_code=1),
]


def _bug_line(script: Path) -> int:
    lines = [
        i
        for i, text in enumerate(script.read_text().splitlines(), 1)
        if text.rstrip().endswith("# BUG")
    ]
    assert len(lines) == 1, f"{script.name} must mark exactly one line with '# BUG'"
    return lines[0]


def _run(case: Case, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    report = tmp_path / "report.json"
    env = {**os.environ, "NO_COLOR": "1", "PYTHONHASHSEED": "0", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONSAFEPATH", None)
    argv = [sys.executable, "-m", "gradcheck_cli", "run", "--json", str(report)]
    argv += [str((SCRIPTS / case.script).relative_to(ROOT))] + (["--bug"] if case.bug else [])
    proc = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert report.is_file(), f"no JSON report\n{proc.stderr[-4000:]}"
    return proc, json.loads(report.read_text())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.script[:-3] + ("-bug" if c.bug else ""))
def test_real_training_code(case: Case, tmp_path: Path) -> None:
    proc, report = _run(case, tmp_path)
    shown = f"exit {proc.returncode}\nstderr:\n{proc.stderr[-6000:]}"
    assert "internal error" not in proc.stderr, shown
    assert report.get("internal_errors", []) == [], shown
    assert report["steps"], f"no backward() call was checked\n{shown}"
    loud = [f for f in report["findings"] if f["severity"] in ("error", "warning")]
    for f in report["findings"]:
        file = (f.get("site") or {}).get("file") or ""
        assert "site-packages" not in file and not file.startswith("/usr"), (
            f"finding points into a library: {f}"
        )
    if case.kind is None:
        assert loud == [], shown
    else:
        assert loud, shown
        first = loud[0]
        assert first["kind"] == case.kind, shown
        assert first["severity"] == case.severity, shown
        assert set(case.names) <= set(first["parameters"]), shown
        assert len(loud) == 1, f"one bug, one finding: {[f['kind'] for f in loud]}\n{shown}"
        if case.bug:
            script = SCRIPTS / case.script
            assert first["site"]["file"] == str(script.relative_to(ROOT)), shown
            assert first["site"]["line"] == _bug_line(script), shown
    for kind in case.info:
        assert any(f["kind"] == kind and f["severity"] == "info" for f in report["findings"]), shown
    assert proc.returncode == case.exit_code, shown
