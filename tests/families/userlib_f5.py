"""Helpers of the user's own project, imported by the family-5 scripts."""

import torch


def sgd_step(params: list[torch.Tensor], lr: float) -> None:
    """Plain SGD over a list of tensors (as in many from-scratch tutorials)."""
    with torch.no_grad():
        for p in params:
            p.data -= lr * p.grad
            p.grad = None


def init_linear(d_in: int, d_out: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    weight = torch.randn(d_in, d_out, requires_grad=True).to(dtype)  # <- BUG
    bias = torch.zeros(d_out, dtype=dtype, requires_grad=True)
    return weight, bias
