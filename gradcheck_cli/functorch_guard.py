"""Staying out of ``torch.func`` transforms (``vmap``, ``grad``, ``jacrev``/``jacfwd``, ``hessian``).

Inside a transform, tensors are functorch wrappers (batched, grad-tracking): a ``bool()`` or
``.item()`` on one raises, and ``torch.func.grad`` runs ``torch.autograd.grad`` on its own inner
level. What the transform computes is its business; gradcheck checks what reaches the enclosing
ordinary ``backward()``. So neither the op tracker's handlers nor the check of a backward call run
while a transform is active: each asks :func:`in_transform` first (one C call, only on the paths
that do work — the tracker's fast path is untouched).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def _peek() -> Callable[[], Any]:
    try:
        from torch._C._functorch import peek_interpreter_stack
    except ImportError:  # a torch without functorch: never inside a transform
        return lambda: None
    return peek_interpreter_stack  # type: ignore[no-any-return]


_peek_interpreter = _peek()
_is_compiling = torch.compiler.is_compiling


def in_transform() -> bool:
    """Is a functorch transform active on this thread (its interpreter stack not empty)?

    Never asked while dynamo traces (it cannot trace the C call; ``torch.compile`` has no
    functorch wrappers in its graph to protect anyway).
    """
    return not _is_compiling() and _peek_interpreter() is not None
