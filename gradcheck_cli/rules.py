"""The cause taxonomy: one stable rule per kind, with its title and the fix (no torch here).

Used by the diagnosis (ids, default severity), the console and JSON reports, and SARIF rules.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    title: str
    hint: str
    severity: str = "error"


RULES: dict[str, Rule] = {
    r.kind: r
    for r in [
        Rule("GC101", "detach", "gradient cut by .detach()",
             "Remove the .detach() if gradients should flow through it (keep it only for values that must stay constant, e.g. targets)."),
        Rule("GC102", "data_attr", "gradient cut by .data",
             "Use the tensor itself instead of .data (for an in-place update without tracking, use `with torch.no_grad():`)."),
        Rule("GC103", "no_grad", "computed inside torch.no_grad()",
             "Move the forward pass of these parameters out of the torch.no_grad() block (or drop the decorator)."),
        Rule("GC104", "set_grad_enabled", "grad mode switched off by torch.set_grad_enabled(False)",
             "Switch grad mode back on before this computation, or use `with torch.set_grad_enabled(...)` so it is restored."),
        Rule("GC105", "inference_mode", "computed inside torch.inference_mode()",
             "Do not run parts of the training forward pass under torch.inference_mode(); it is for evaluation only."),
        Rule("GC106", "requires_grad_false", "tensor does not require grad",
             "Create it with requires_grad=True (or call .requires_grad_()), or stop freezing it here."),
        Rule("GC107", "non_leaf", "expected tensor is not a leaf",
             "Move/cast the tensor before enabling grad (e.g. torch.randn(..., device=d, dtype=t, requires_grad=True)) or wrap it in nn.Parameter, so the optimizer sees the leaf."),
        Rule("GC108", "rewrap_tensor", "tensor re-wrapped with torch.tensor()",
             "Use the tensor directly (or .to()/.clone()); torch.tensor(t) copies values out of the graph."),
        Rule("GC109", "python_scalar_roundtrip", "value went through a Python number",
             "Keep the value as a tensor: use the tensor instead of .item()/.tolist()/float() and torch.tensor(...)."),
        Rule("GC110", "numpy_roundtrip", "value went through NumPy",
             "Do the computation with torch ops; NumPy arrays carry no gradient."),
        Rule("GC111", "nondifferentiable_op", "non-differentiable operation on the gradient path",
             "Replace the hard operation (argmax, comparison, integer cast) with a differentiable relaxation (softmax, sigmoid, straight-through estimator)."),
        Rule("GC112", "function_returns_none", "custom autograd.Function returned no gradient",
             "Return a gradient (not None) from backward() for every input that requires grad."),
        Rule("GC120", "unused_parameter", "parameter never contributed to the loss",
             "Call the module in forward() and use its output in the loss, or remove it (DDP needs find_unused_parameters=True otherwise)."),
        Rule("GC121", "unregistered_parameter", "tensor used as a parameter is not registered",
             "Use nn.ModuleList / nn.ModuleDict / nn.Parameter so model.parameters() (and the optimizer) include it."),
        Rule("GC140", "not_frozen", "a tensor listed under `frozen` still requires grad",
             "Freeze it with requires_grad_(False) (on the parameters, not just the module attribute) before training."),
        Rule("GC130", "loss_not_differentiable", "backward() on a loss that does not require grad",
             "Make sure the loss is computed from parameters with grad mode on and without cutting the graph."),
        Rule("GC150", "rank_divergent", "parameter got no gradient on some ranks only",
             "Make every rank run the same layers (or compute the branch's loss on every rank); DDP's all-reduce otherwise hides the missing gradient."),
        Rule("GC201", "zero_grad_flow", "gradient is all zero",
             "Find why the op passes no gradient (dead ReLU, saturated clamp, zero mask) and fix its input range or initialisation."),
        Rule("GC301", "param_not_in_optimizer", "parameter receives a gradient but no optimizer updates it",
             "Build the optimizer from model.parameters() after all layers exist (or add_param_group)."),
        Rule("GC302", "stale_optimizer", "optimizer still holds replaced parameters",
             "Build (or rebuild) the optimizer after replacing layers, or add the new parameters with add_param_group."),
        Rule("GC303", "grad_wiped", "gradients cleared between backward() and step()",
             "Call zero_grad() before backward() (or after step()), never between backward() and step()."),
        Rule("GC304", "step_without_grad", "optimizer.step() with no gradient on any of its parameters",
             "Only call step() after a backward() that reaches these parameters.", "warning"),
        Rule("GC305", "frozen_weight_decay", "frozen parameters still decayed by the optimizer",
             "Remove frozen parameters from the optimizer (or set their .grad to None with zero_grad(set_to_none=True)).", "warning"),
    ]
}  # fmt: skip


def rule_for(kind: str) -> Rule:
    return RULES[kind]
