"""torch.func transforms and higher-order autograd, in-process (issues 20 and 21).

The sample scripts (``correct_wgan_gp.py``, ``detach_gradient_penalty.py``, ...) cover whole
training loops end to end; these tests pin each rule on the smallest case: what the report says
(kind, names, line, severity) and what it must not say.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, hessian, jacrev, vmap

import gradcheck_cli
from gradcheck_cli.model import Report, ScriptInfo

THIS = "tests/test_higher_order.py"


def _line_of(fn: Callable[..., Any], marker: str) -> int:
    import inspect

    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, text in enumerate(lines) if marker in text)


def _check(fn: Callable[[], None]) -> Report:
    with gradcheck_cli.watch() as session:
        fn()
    return session.build_report(ScriptInfo(path=THIS, argv=[]))


def _problems(report: Report) -> list[Any]:
    return [f for f in report.findings if f.severity != "info"]


# -- torch.func transforms -------------------------------------------------------------------------


def test_per_sample_gradients_under_vmap_run_without_internal_error() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def loss_one(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> Any:
        return nn.functional.mse_loss(functional_call(model, params, (x[None],)), y[None])

    results: list[torch.Tensor] = []

    def step() -> None:
        for _ in range(2):
            x, y = torch.randn(6, 4), torch.randn(6, 1)
            params = {k: v.detach() for k, v in model.named_parameters()}
            g = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)
            results.append(g["0.weight"])
            for k, p in model.named_parameters():
                p.grad = g[k].mean(0)
            opt.step()
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()

    report = _check(step)
    assert report.internal_errors == []
    assert _problems(report) == []
    assert results[0].shape == (6, 8, 4)  # what the transform computes is untouched
    # Only the two ordinary backward() calls are checked; torch.func's own autograd calls are not.
    assert [s.api for s in report.steps] == ["Tensor.backward", "Tensor.backward"]


def test_jacrev_and_hessian_inside_a_training_step() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))

    def step() -> None:
        x = torch.randn(5, 3)
        jac = vmap(jacrev(lambda v: model(v[None])[0]))(x)
        h = hessian(lambda v: model(v[None]).pow(2).sum())(x[0])
        (model(x).pow(2).mean() + jac.pow(2).mean() + 0 * h.sum()).backward()

    report = _check(step)
    assert report.internal_errors == []
    assert _problems(report) == []
    assert all(c.state == "ok" for c in report.steps[0].checked)


def test_a_hand_written_grad_counts_for_the_optimizer_after_a_zero_grad() -> None:
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(3))
    opt = torch.optim.SGD([w], lr=0.1)

    def step() -> None:
        (w * 2).sum().backward()
        opt.zero_grad()
        w.grad = torch.ones(3)  # e.g. clipped per-sample gradients
        opt.step()

    assert _problems(_check(step)) == []


# -- torch.autograd.grad: its inputs ---------------------------------------------------------------


def test_non_leaf_inputs_of_autograd_grad_are_reached_not_non_leaf() -> None:
    torch.manual_seed(0)
    w = torch.randn(3, requires_grad=True)

    def step() -> None:
        fast = w * 1.0  # a non-leaf, like MAML's fast weights
        torch.autograd.grad(fast.pow(2).sum(), [fast, w])

    report = _check(step)
    assert _problems(report) == []
    assert [c.state for c in report.steps[0].checked] == ["ok", "ok"]


def test_allow_unused_accepts_an_input_the_outputs_do_not_reach() -> None:
    a = torch.randn(3, requires_grad=True)
    b = torch.randn(3, requires_grad=True)

    def step() -> None:
        (_, gb) = torch.autograd.grad(a.sum(), [a, b], allow_unused=True)
        assert gb is None

    assert _problems(_check(step)) == []


def test_a_tensor_only_differentiated_by_autograd_grad_is_not_expected_later() -> None:
    """WGAN-GP's ``interp``: its gradient is the return value; a later backward() leaves its
    ``.grad`` zero (here: exactly zero through a linear critic's double backward)."""
    torch.manual_seed(0)
    critic = nn.Linear(2, 1)
    opt = torch.optim.SGD(critic.parameters(), lr=0.1)

    def step() -> None:
        interp = torch.randn(8, 2).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(interp).sum(), interp, create_graph=True)
        loss = critic(torch.randn(8, 2)).mean() + g.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    report = _check(step)
    assert _problems(report) == []
    assert "interp" not in [c.name for c in report.steps[1].checked]


# -- create_graph=True gradients -------------------------------------------------------------------


def test_a_detached_gradient_penalty_is_reported_at_the_detach() -> None:
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.SGD(critic.parameters(), lr=0.1)

    def step() -> None:
        x = torch.randn(8, 2, requires_grad=True)
        (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        gp = g.detach().pow(2).sum()  # penalty cut
        loss = critic(torch.randn(8, 2)).pow(2).mean() + gp
        opt.zero_grad()
        loss.backward()
        opt.step()

    (finding,) = _problems(_check(step))
    assert finding.kind == "detach"
    assert finding.site.line == _line_of(step, "# penalty cut")
    # The last bias does not enter d critic / d x: the penalty never trained it.
    assert finding.parameters == ["critic.0.weight", "critic.0.bias", "critic.2.weight"]
    assert "create_graph=True" in finding.message


def test_a_detached_copy_of_the_penalty_for_logging_is_not_a_finding() -> None:
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    logged: list[float] = []

    def step() -> None:
        x = torch.randn(8, 2, requires_grad=True)
        (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        logged.append(g.detach().norm().item())
        (critic(torch.randn(8, 2)).pow(2).mean() + g.pow(2).sum()).backward()

    assert _problems(_check(step)) == []


# -- exact cancellation ----------------------------------------------------------------------------


def test_a_bias_under_a_difference_of_means_is_information_naming_the_line() -> None:
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))

    def step() -> None:
        real, fake = torch.randn(16, 2), torch.randn(16, 2)
        loss = critic(fake).mean() - critic(real).mean()  # cancels
        loss.backward()

    report = _check(step)
    assert _problems(report) == []
    (info,) = [f for f in report.findings if f.parameters == ["critic.2.bias"]]
    assert (info.kind, info.severity, info.grad_state) == ("zero_grad_flow", "info", "zero")
    assert "cancel exactly" in info.message
    assert info.site.line == _line_of(step, "# cancels")


def test_the_op_tracker_records_nothing_inside_a_transform() -> None:
    """The tracker's handlers stay out of functorch wrappers (a ``bool()``/``.item()`` on one
    raises): a detach inside ``grad`` is the transform's business, not a cut of the run."""
    w = torch.randn(3, requires_grad=True)

    def f(v: torch.Tensor) -> torch.Tensor:
        return (v * v.detach()).sum()

    with gradcheck_cli.watch() as session:
        grad(f)(w)
        inside = dict(session.tracker.cuts)
        w.detach()
        outside = dict(session.tracker.cuts)
    assert inside == {}
    assert [c.kind for c in outside.values()] == ["detach"]


def test_a_penalty_on_an_input_made_without_requires_grad_names_the_input() -> None:
    torch.manual_seed(0)
    critic = nn.Linear(2, 1)

    def step() -> None:
        interp = torch.randn(8, 2) * 0.5
        torch.autograd.grad(critic(interp).sum(), interp, create_graph=True)  # raises

    with gradcheck_cli.watch() as session:
        try:
            step()
        except RuntimeError as e:
            notes = getattr(e, "__notes__", [])
        else:
            raise AssertionError("torch.autograd.grad should have raised")
    (finding,) = session.build_report(ScriptInfo(path=THIS, argv=[])).findings
    assert (finding.kind, finding.parameters, finding.grad_state) == (
        "requires_grad_false",
        ["interp"],
        "raised",
    )
    assert finding.site.line == _line_of(step, "# raises")
    assert any("interp" in n and "requires_grad_(True)" in n for n in notes)


def test_a_shift_removed_by_centering_is_information_at_the_broadcast() -> None:
    """The terms meet inside one op: the broadcast ``x + c`` sums a gradient whose elements cancel."""
    c = nn.Parameter(torch.zeros(1))

    def step() -> None:
        h = torch.tensor([[1.0, 2.0], [3.0, 4.0]]) + c  # shift
        (h - h.mean()).pow(2).sum().backward()

    report = _check(step)
    assert _problems(report) == []
    (info,) = [f for f in report.findings if f.parameters == ["c"]]
    assert (info.kind, info.severity) == ("zero_grad_flow", "info")
    assert "cancel exactly" in info.message and "AddBackward0" in info.message
    assert info.site.line == _line_of(step, "# shift")
