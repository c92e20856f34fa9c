"""The engine in-process: exact patch restore, the Python API, and cases no sample script covers.

The ``watch()`` API runs the same engine as ``gradcheck run``; these tests drive it directly, which
keeps them fast, and check what a user sees in the report (kind, names, line).
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import gradcheck_cli
from gradcheck_cli.model import Report, ScriptInfo

ROOT = Path(__file__).resolve().parent.parent
THIS = "tests/test_engine.py"


def _line_of(fn: Callable[..., Any], marker: str) -> int:
    """Line number (in this file) of the line of ``fn`` containing ``marker``."""
    import inspect

    lines, start = inspect.getsourcelines(fn)
    for i, text in enumerate(lines):
        if marker in text:
            return start + i
    raise AssertionError(marker)


def _problems(report: Report) -> list[Any]:
    """Errors and warnings (partly dead ReLU layers are information, not problems)."""
    return [f for f in report.findings if f.severity != "info"]


def _check(fn: Callable[[], None]) -> Report:
    with gradcheck_cli.watch() as session:
        fn()
    return session.build_report(ScriptInfo(path=THIS, argv=[]))


PATCHED = [
    (torch.Tensor, "backward"),
    (torch.autograd, "backward"),
    (torch.autograd, "grad"),
    (torch, "from_numpy"),
    (torch.nn.Module, "requires_grad_"),
    (torch.optim.Optimizer, "__init__"),
    (torch.optim.Optimizer, "zero_grad"),
    (torch.nn.Module, "__setattr__"),
    (torch.no_grad, "__enter__"),
    (torch.no_grad, "__exit__"),
    (torch.enable_grad, "__enter__"),
    (torch.enable_grad, "__exit__"),
    (torch.inference_mode, "__enter__"),
    (torch.inference_mode, "__exit__"),
    (torch.set_grad_enabled, "__init__"),
    (torch.set_grad_enabled, "__enter__"),
    (torch.set_grad_enabled, "__exit__"),
    (torch.set_grad_enabled, "__call__"),
]


def test_patches_are_installed_and_restored_exactly() -> None:
    before = {(id(o), n): (n in vars(o), vars(o).get(n)) for o, n in PATCHED}
    from torch.optim.optimizer import _global_optimizer_pre_hooks

    hooks_before = len(torch.nn.modules.module._global_forward_pre_hooks)
    step_hooks_before = len(_global_optimizer_pre_hooks)
    modes_before = torch._C._len_torch_function_stack()
    with gradcheck_cli.watch():
        for owner, name in PATCHED:
            assert vars(owner).get(name) is not before[(id(owner), name)][1], (
                f"{owner}.{name} not patched"
            )
        assert torch._C._len_torch_function_stack() == modes_before + 1
    after = {(id(o), n): (n in vars(o), vars(o).get(n)) for o, n in PATCHED}
    for key, (had, obj) in before.items():
        assert after[key][0] == had
        assert after[key][1] is obj
    assert len(torch.nn.modules.module._global_forward_pre_hooks) == hooks_before
    assert len(_global_optimizer_pre_hooks) == step_hooks_before
    assert torch._C._len_torch_function_stack() == modes_before
    assert torch.is_grad_enabled()


def test_no_grad_still_works_in_every_form_under_watch() -> None:
    from torch import no_grad  # imported before nothing: the class itself is patched

    w = torch.randn(3, requires_grad=True)

    @no_grad()
    def decorated() -> torch.Tensor:
        return w * 2

    with gradcheck_cli.watch():
        with torch.no_grad():
            assert not (w * 2).requires_grad
        with no_grad():
            assert not (w * 2).requires_grad
        assert not decorated().requires_grad
        torch.set_grad_enabled(False)
        assert not (w * 2).requires_grad
        torch.set_grad_enabled(True)
        with torch.inference_mode():
            assert not (w * 2).requires_grad
        assert (w * 2).requires_grad


def test_clean_two_layer_step_has_no_findings() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters())

    def step() -> None:
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    report = _check(step)
    assert _problems(report) == []
    assert report.steps_checked == 1
    states = {c.name: c.state for c in report.steps[0].checked}
    assert states == {
        n: "ok" for n in ("model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias")
    }


class _Growing(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(2, 2)
        self.extra = [nn.Parameter(torch.randn(2))]  # a plain list: not registered

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).sum() + sum(p.sum() for p in self.extra)


def test_a_model_that_changes_between_checked_calls_is_named_afresh() -> None:
    """Names are cached between checked calls: a layer added, or a tensor appended to a plain
    list, after the first check must still be seen at the next one."""
    torch.manual_seed(0)
    model = _Growing()
    with gradcheck_cli.watch(gradcheck_cli.Config(steps="all")) as session:
        for i in range(3):
            model(torch.randn(3, 2)).backward()
            if i == 0:
                model.extra.append(nn.Parameter(torch.randn(2)))
            if i == 1:
                model.late = nn.Linear(2, 2)  # never called: unused at backward call 2
    found = {f.kind: f for f in session.findings}
    assert found["unregistered_parameter"].parameters == ["model.extra[0]", "model.extra[1]"]
    assert found["unused_parameter"].parameters == ["model.late.weight", "model.late.bias"]
    assert found["unused_parameter"].steps == [2]


def test_gradient_norms_and_zero_states_with_sparse_and_bfloat16_gradients() -> None:
    """The per-step gradient norms are measured in one batched pass; sparse (embedding) and
    bfloat16 gradients must come out as torch computes them, and a zero one as ``zero``."""
    torch.manual_seed(0)
    emb = nn.Embedding(10, 4, sparse=True)
    head = nn.Linear(4, 2).to(torch.bfloat16)
    dead = nn.Linear(4, 2)
    opt = torch.optim.SGD([*emb.parameters(), *head.parameters(), *dead.parameters()], lr=0.1)

    def step() -> None:
        opt.zero_grad()
        h = emb(torch.tensor([1, 2, 3]))
        loss = head(h.to(torch.bfloat16)).float().sum() + (dead(h) * 0.0).sum()
        loss.backward()

    report = _check(step)
    checked = {c.name: c for c in report.steps[0].checked}
    assert checked["emb.weight"].norm == pytest.approx(
        float(emb.weight.grad.coalesce().values().norm()), rel=1e-6
    )
    assert checked["head.weight"].norm == pytest.approx(
        float(head.weight.grad.float().norm()), rel=1e-2
    )
    assert checked["dead.weight"].state == "zero"
    assert checked["dead.bias"].state == "zero"
    (finding,) = _problems(report)
    assert finding.kind == "zero_grad_flow"
    assert set(finding.parameters) == {"dead.weight", "dead.bias"}
    assert finding.site is not None
    assert finding.site.line == _line_of(step, "* 0.0")
    assert report.internal_errors == []


def test_an_embeddings_unused_rows_are_not_reported_as_dead_units() -> None:
    """Most rows of an embedding's gradient are zero (tokens not in the batch): no ReLU is behind
    them, so there is nothing to say, not even information."""
    torch.manual_seed(0)
    emb, head = nn.Embedding(100, 8), nn.Linear(8, 2)
    opt = torch.optim.SGD([*emb.parameters(), *head.parameters()], lr=0.1)

    def step() -> None:
        opt.zero_grad()
        head(emb(torch.tensor([1, 2, 3]))).sum().backward()
        opt.step()

    report = _check(step)
    assert report.findings == []
    checked = {c.name: c for c in report.steps[0].checked}
    assert checked["emb.weight"].state == "ok"
    assert checked["emb.weight"].dead_fraction is None


@pytest.mark.parametrize(("atol", "state"), [(0.0, "ok"), (1e-6, "zero")])
def test_zero_atol_decides_when_a_tiny_gradient_counts_as_zero(atol: float, state: str) -> None:
    from gradcheck_cli.config import Config

    torch.manual_seed(0)
    big, tiny = nn.Linear(4, 1), nn.Linear(4, 1)

    def step() -> None:
        x = torch.randn(8, 4)
        (big(x).sum() + 1e-9 * tiny(x).sum()).backward()

    with gradcheck_cli.watch(Config(zero_atol=atol)) as session:
        step()
    report = session.build_report(ScriptInfo(path=THIS, argv=[]))
    checked = {c.name: c.state for c in report.steps[0].checked}
    assert checked["big.weight"] == "ok"
    assert checked["tiny.weight"] == state
    assert checked["tiny.bias"] == state
    kinds = {(f.kind, tuple(sorted(f.parameters))) for f in _problems(report)}
    expected = {("zero_grad_flow", ("tiny.bias", "tiny.weight"))} if state == "zero" else set()
    assert kinds == expected


def test_an_embedding_with_padding_idx_built_under_watch_is_checked_cleanly() -> None:
    """Every BERT-style embedding zeroes its padding row through a no_grad view written in place;
    reading that view's grad_fn raises in torch, which must not become an internal error."""
    with gradcheck_cli.watch() as session:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Embedding(10, 4, padding_idx=0), nn.Flatten(), nn.Linear(12, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(2):
            opt.zero_grad()
            model(torch.randint(0, 10, (8, 3))).pow(2).mean().backward()
            opt.step()
    report = session.build_report(ScriptInfo(path=THIS, argv=[]))
    assert report.internal_errors == []
    assert report.findings == []
    assert {c.name: c.state for c in report.steps[0].checked} == {
        "model.0.weight": "ok",
        "model.2.weight": "ok",
        "model.2.bias": "ok",
    }


class _DeadAndCancelled(nn.Module):
    """Half of ``hid``'s ReLU units are dead (information) and ``scale`` cancels out (an error
    no single op explains): two findings without a common line."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.hid, self.out = nn.Linear(4, 8), nn.Linear(8, 10), nn.Linear(10, 1)
        self.scale = nn.Parameter(torch.ones(8))
        with torch.no_grad():
            self.hid.bias[5:] = -100.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x) + (self.scale - self.scale)
        return self.out(torch.relu(self.hid(h)))


def test_an_unexplained_error_never_merges_into_an_info_finding() -> None:
    torch.manual_seed(0)
    model = _DeadAndCancelled()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def steps() -> None:
        for _ in range(4):
            opt.zero_grad()
            model(torch.randn(16, 4)).pow(2).mean().backward()
            opt.step()

    report = _check(steps)
    by_severity = {f.severity: f for f in report.findings}
    assert set(by_severity) == {"error", "info"}
    error, info = by_severity["error"], by_severity["info"]
    assert (error.kind, error.parameters, error.grad_state) == (
        "zero_grad_flow",
        ["model.scale"],
        "zero",
    )
    assert error.steps == [0, 1, 2, 3]
    assert info.parameters == ["model.hid.weight"]
    assert info.site is not None
    assert "(dead ReLUs)" in info.message


_LIBRARY_MODEL = """
import torch
from torch import nn


class Pooler(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(8, 8)

    def forward(self, h):
        return torch.tanh(self.dense(h[:, 0]))


class LibModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.pooler = Pooler()

    def forward(self, x):
        hidden = self.embed(x)
        return hidden, self.pooler(hidden)
"""


class _UsesLibrary(nn.Module):
    def __init__(self, lib: nn.Module, lib2: nn.Module) -> None:
        super().__init__()
        self.lib, self.lib2 = lib, lib2
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.lib(x)[0] + self.lib2(x)[0]
        return self.head(hidden.mean(dim=1))


def test_an_unused_part_of_a_library_model_points_at_the_users_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pretrained model's pooler that the user's head ignores: the library's own line is not the
    user's to fix, so the finding points at the user's call of the library model."""
    lib_dir = tmp_path / "site-packages"
    lib_dir.mkdir()
    (lib_dir / "gc_fake_lib.py").write_text(_LIBRARY_MODEL)
    monkeypatch.syspath_prepend(str(lib_dir))
    import gc_fake_lib  # type: ignore[import-not-found]

    torch.manual_seed(0)
    model = _UsesLibrary(gc_fake_lib.LibModel(), gc_fake_lib.LibModel())

    def step() -> None:
        model(torch.randn(2, 3, 4)).sum().backward()

    report = _check(step)
    first, second = _problems(report)  # two library models on one line: one finding each
    line = _line_of(_UsesLibrary.forward, "self.lib(x)")
    for finding, attr in ((first, "lib"), (second, "lib2")):
        assert finding.kind == "unused_parameter"
        assert finding.parameters == [
            f"model.{attr}.pooler.dense.weight",
            f"model.{attr}.pooler.dense.bias",
        ]
        assert finding.site is not None
        assert (finding.site.file, finding.site.line) == (THIS, line)
        assert f"`model.{attr}.pooler.dense` ran" in finding.message
        assert f"`model.{attr}` (LibModel) is library code" in finding.hint


@pytest.mark.parametrize("declared", [False, True])
def test_a_freeze_seen_in_the_run_is_information_at_the_freeze_line(declared: bool) -> None:
    """A layer frozen by mistake is not an error (frozen backbones are normal) but must not be
    silent either; listing it under ``frozen`` in the config drops the line."""
    from gradcheck_cli.config import Config

    def run() -> None:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        model[0].requires_grad_(False)  # the freeze
        model(torch.randn(5, 4)).sum().backward()

    config = Config(frozen=["model.0.*"]) if declared else Config()
    with gradcheck_cli.watch(config) as session:
        run()
    report = session.build_report(ScriptInfo(path=THIS, argv=[]))
    assert _problems(report) == []
    frozen = [f for f in report.findings if f.kind == "requires_grad_false"]
    if declared:
        assert frozen == []
        return
    (info,) = frozen
    assert info.severity == "info"
    assert info.parameters == ["model.0.weight", "model.0.bias"]
    assert info.site is not None and info.site.line == _line_of(run, "# the freeze")


def test_a_zero_gradient_seen_before_its_probe_is_counted_from_that_step() -> None:
    """On a graph too big to probe at once, the first lost step waits for the next checked one;
    the finding still lists it, and later steps reuse the explanation without a new probe."""
    torch.manual_seed(0)
    inp, scale = nn.Linear(4, 8), nn.Parameter(torch.ones(8))
    opt = torch.optim.SGD([*inp.parameters(), scale], lr=0.01)

    def steps() -> None:
        for _ in range(4):
            h = inp(torch.randn(16, 4)) + (scale - scale)
            for _ in range(5100):  # over the 5000 nodes probed on the first check
                h = h * 1.0
            opt.zero_grad()
            h.pow(2).mean().backward()
            opt.step()

    report = _check(steps)
    (finding,) = _problems(report)
    assert (finding.kind, finding.parameters, finding.grad_state) == (
        "zero_grad_flow",
        ["scale"],
        "zero",
    )
    assert finding.steps == [0, 1, 2, 3]


def test_a_cut_inside_a_reentrant_checkpoint_says_where_to_look() -> None:
    """A reentrant checkpoint runs its segment under no_grad and re-runs it in backward, out of the
    mode's sight: the finding points at the checkpoint call and says how to see the line."""
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(0)
    net = nn.ModuleDict({"a": nn.Linear(8, 8), "b": nn.Linear(8, 8), "head": nn.Linear(8, 1)})

    def segment(h: torch.Tensor) -> torch.Tensor:
        return net["b"](net["a"](h).detach())

    def step() -> None:
        x = torch.randn(4, 8, requires_grad=True)
        h = checkpoint(segment, x, use_reentrant=True)  # the call
        net["head"](h).sum().backward()

    report = _check(step)
    hidden = [f for f in report.findings if "reentrant" in f.message]
    assert len(hidden) == 1
    assert hidden[0].parameters == ["net.a.weight", "net.a.bias"]
    assert hidden[0].site is not None and hidden[0].site.line == _line_of(step, "# the call")
    assert "use_reentrant=False" in hidden[0].hint
    assert not any(p.startswith("net.b.") for f in _problems(report) for p in f.parameters)


def test_detach_in_a_function_points_at_the_detach_line() -> None:
    torch.manual_seed(0)
    encoder, head = nn.Linear(4, 4), nn.Linear(4, 1)
    opt = torch.optim.SGD([*encoder.parameters(), *head.parameters()], lr=0.1)

    def step() -> None:
        h = encoder(torch.randn(2, 4)).detach()  # cut
        head(h).sum().backward()
        opt.step()

    report = _check(step)
    (finding,) = _problems(report)
    assert finding.kind == "detach"
    assert sorted(finding.parameters) == ["encoder.bias", "encoder.weight"]
    assert (finding.site.file, finding.site.line) == (THIS, _line_of(step, "# cut"))


def test_separate_optimizers_do_not_make_a_detached_generator_expected() -> None:
    torch.manual_seed(0)
    gen, disc = nn.Linear(2, 2), nn.Linear(2, 1)
    opt_d = torch.optim.SGD(disc.parameters(), lr=0.1)
    torch.optim.SGD(gen.parameters(), lr=0.1)

    def d_step() -> None:
        fake = gen(torch.randn(3, 2)).detach()
        disc(fake).mean().backward()
        opt_d.step()

    assert _problems(_check(d_step)) == []


def test_autograd_grad_inputs_are_the_expected_set() -> None:
    torch.manual_seed(0)
    a = torch.randn(3, requires_grad=True)
    b = torch.randn(3, requires_grad=True)

    def step() -> None:
        c = b.detach()  # b cut
        torch.autograd.grad((a * c).sum(), [a, b], allow_unused=True)

    report = _check(step)
    (finding,) = _problems(report)
    assert finding.kind == "detach"
    assert finding.parameters == ["b"]
    assert finding.site.line == _line_of(step, "# b cut")


def test_tags_live_in_side_tables_so_checkpoints_stay_loadable(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)

    def step() -> None:
        feats = model(torch.randn(1, 2)).detach()
        model.weight.requires_grad_(False)
        torch.save({"feats": feats, "state": model.state_dict()}, tmp_path / "ckpt.pt")

    _check(step)
    loaded = torch.load(tmp_path / "ckpt.pt")  # weights_only=True by default
    assert set(loaded) == {"feats", "state"}


def test_torch_warnings_name_the_users_line_not_ours() -> None:
    w = torch.randn(3, requires_grad=True) * 2

    def read() -> None:
        _ = w.grad  # non-leaf read warns

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gradcheck_cli.watch():
            read()
    (warning,) = [c for c in caught if "is not a leaf Tensor" in str(c.message)]
    assert warning.filename == str(ROOT / THIS)
    assert warning.lineno == _line_of(read, "# non-leaf read")


@pytest.mark.parametrize(
    ("script", "note"),
    [
        ("tests/fixtures/compiled_model.py", None),
        ("tests/fixtures/scripted_model.py", "torch.jit.script"),
    ],
)
def test_compiled_and_scripted_models_still_run(
    script: str, note: str | None, tmp_path: Path
) -> None:
    report_path = tmp_path / "r.json"
    plain = subprocess.run(
        [sys.executable, script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    run = subprocess.run(
        [sys.executable, "-m", "gradcheck_cli", "run", "--json", str(report_path), script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == plain.stdout
    assert (
        "global hooks" not in run.stderr
    )  # torch.compile's warning about our hook is ours to hide
    report = Report.from_dict(__import__("json").loads(report_path.read_text()))
    assert _problems(report) == []
    assert report.steps_checked == 3
    if note:
        assert any(note in n for n in report.notes)
        assert note in run.stderr


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor, cut: bool) -> torch.Tensor:
        h = torch.relu(self.body(x))
        if cut:
            h = h.detach()  # the bug, from the fourth step on
        return self.head(h)


def _train(
    model: _Encoder,
    steps: int,
    cut_at: Callable[[int], bool],
    opt: torch.optim.Optimizer | None = None,
) -> None:
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.1)
    for i in range(steps):
        opt.zero_grad()
        model(torch.randn(16, 4), cut_at(i)).pow(2).mean().backward()
        opt.step()


def test_a_cut_that_starts_after_clean_checked_steps_is_found_at_its_line() -> None:
    """After a clean checked step the op tracker sleeps (its per-op work is most of a checked
    step's cost); a check that then finds a lost gradient wakes it, and the next check names the
    cut's line, counting the step where the loss was first seen."""
    torch.manual_seed(0)
    model = _Encoder()
    with gradcheck_cli.watch(gradcheck_cli.Config(steps="all")) as session:
        _train(model, 6, lambda i: i >= 3)
        slept = session.instruments.dormant
    (finding,) = [f for f in session.findings if f.severity != "info"]
    assert finding.kind == "detach"
    assert finding.parameters == ["model.body.weight", "model.body.bias"]
    assert finding.site is not None
    assert (finding.site.file, finding.site.line) == (THIS, _line_of(_Encoder.forward, "detach()"))
    assert finding.steps == [3, 4, 5]
    assert not slept  # it stayed awake while the cut went on


def test_a_cut_made_at_one_step_while_the_tracker_slept_reads_as_a_skipped_call() -> None:
    """The documented limit: a cut at one step only, while the tracker slept, wakes it (for the
    rest of the run), but the cut is not made again for it to see. What the run shows is said —
    the layer got no gradient at that call and did at the others (information, as for a dropped
    branch)."""
    torch.manual_seed(0)
    model = _Encoder()
    with gradcheck_cli.watch(gradcheck_cli.Config(steps="all")) as session:
        _train(model, 7, lambda i: i == 3)
        slept = session.instruments.dormant
    assert [f for f in session.findings if f.severity != "info"] == []
    (skipped,) = [f for f in session.findings if f.kind == "unused_parameter"]
    assert skipped.parameters == ["model.body.weight", "model.body.bias"]
    assert "got a non-zero gradient in 6 of 7 checked calls" in skipped.message
    assert not slept


def _outcome(
    cut_at: Callable[[int], bool], log_loss: bool, drop_at: int | None = None
) -> list[tuple[Any, ...]]:
    """What a user sees of a 7-step run of the encoder: each finding's kind, names, line, steps.
    ``drop_at``: the step where a hook throws away the head's weight gradient as it arrives
    (reached, yet no gradient: what ``.grad`` marks alone would read as not reached)."""
    torch.manual_seed(0)
    model = _Encoder()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = 0.0
    step = 0

    def drop(p: torch.Tensor) -> None:
        if step == drop_at:
            p.grad = None

    model.head.weight.register_post_accumulate_grad_hook(drop)
    with gradcheck_cli.watch(gradcheck_cli.Config(steps="all")) as session:
        for i in range(7):
            step = i
            opt.zero_grad()
            loss = model(torch.randn(16, 4), cut_at(i)).pow(2).mean()
            loss.backward()
            if log_loss:
                seen += loss.item()  # (a value read from the graph just checked: no cut)
            opt.step()
    assert session.internal_errors == []
    return [
        (f.kind, f.severity, f.parameters, f.site and (f.site.file, f.site.line), f.steps)
        for f in session.findings
    ]


_CUTS: dict[str, Callable[[int], bool]] = {
    "never": lambda i: False,
    "second step only": lambda i: i == 1,
    "from the second step on": lambda i: i >= 1,
    "every other step": lambda i: i % 2 == 1,
    "from the fourth step on": lambda i: i >= 3,
    "third step only": lambda i: i == 2,
    "gradient dropped by a hook at the second step": lambda i: False,
}


@pytest.mark.parametrize("log_loss", [False, True], ids=["quiet", "logging loss.item()"])
@pytest.mark.parametrize("cut", list(_CUTS), ids=list(_CUTS))
def test_a_big_graph_read_from_marks_before_the_tracker_sleeps_finds_the_same(
    cut: str, log_loss: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a big graph the check of the second step reads what the backward reached from the
    ``.grad`` marks instead of walking the graph again, and walks it only if the marks differ
    from the first walk. Forced here on a small model (every graph counts as big): the findings,
    their lines and steps are those of a run that walks every awake check."""
    from gradcheck_cli import backward_check

    drop_at = 1 if cut == "gradient dropped by a hook at the second step" else None
    walked = _outcome(_CUTS[cut], log_loss, drop_at)
    monkeypatch.setattr(backward_check, "_MARKS_FROM_NODES", 0)
    assert _outcome(_CUTS[cut], log_loss, drop_at) == walked
    if cut == "second step only":
        (finding,) = [f for f in walked if f[1] != "info"]
        assert finding[0] == "detach" and finding[4] == [1]
        assert finding[3] == (THIS, _line_of(_Encoder.forward, "detach()"))


def test_a_big_graph_is_walked_once_in_a_clean_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The walks a clean run makes: each awake check walks a small graph (two), a big one is
    walked by the first check only (unless something asks for its nodes: dead units seen)."""
    from gradcheck_cli import backward_check, graph

    walks = []
    real = graph.walk_graph

    def counted(starts: Any) -> Any:
        walks.append(1)
        return real(starts)

    monkeypatch.setattr(graph, "walk_graph", counted)
    monkeypatch.setattr(backward_check, "walk_graph", counted)
    for big, expected in ((False, 2), (True, 1)):
        if big:
            monkeypatch.setattr(backward_check, "_MARKS_FROM_NODES", 0)
        walks.clear()
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with gradcheck_cli.watch(gradcheck_cli.Config(steps="all")) as session:
            for _ in range(5):
                opt.zero_grad()
                model(torch.randn(16, 4)).pow(2).mean().backward()
                opt.step()
        assert len(walks) == expected
        assert [f for f in session.findings if f.severity != "info"] == []


def test_the_nodes_of_a_graph_read_from_marks_are_walked_only_if_asked() -> None:
    """A check that read its graph from marks keeps it for the next check to ask whether a cut
    read a value from it (a logged ``loss.item()``); when the tracker sleeps, the graph is walked
    if a cut recorded since may ask, and let go otherwise."""
    from gradcheck_cli.expectation import Expectations
    from gradcheck_cli.graph import MarkedWalk, NodesOf

    x = torch.randn(3, requires_grad=True)
    y = (x * 2).sum()
    node = y.grad_fn
    for asked in (True, False):
        book = Expectations()
        book.earlier_nodes = NodesOf(MarkedWalk([node], {}))
        book.settle_earlier(asked)
        assert isinstance(book.earlier_nodes, set)
        assert (id(node) in book.earlier_nodes) is asked
    lazy = NodesOf(MarkedWalk([node], {}))
    assert id(node) in lazy and id(node.next_functions[0][0]) in lazy


def test_the_tracker_sleeps_once_a_whole_iteration_was_checked_clean() -> None:
    """A correct loop with two optimizers (a GAN's shape): the tracker stays awake until one of
    them steps a second time — the second one's backward is part of the iteration, and so is
    what the loop does after its last step — and sleeps after that."""
    torch.manual_seed(0)
    model = _Encoder()
    first = torch.optim.SGD(model.body.parameters(), lr=0.1)
    second = torch.optim.SGD(model.head.parameters(), lr=0.1)
    awake = []
    with gradcheck_cli.watch(gradcheck_cli.Config(steps="all")) as session:
        for _ in range(2):
            for opt in (first, second):
                opt.zero_grad()
                model(torch.randn(16, 4), False).pow(2).mean().backward()
                opt.step()
                awake.append(not session.instruments.dormant)
    assert awake == [True, True, False, False]
    assert [f for f in session.findings if f.severity != "info"] == []
    assert session.internal_errors == []
