"""Smallest possible example of a tensor that was created without requires_grad.

A linear score x·w + b is computed and backpropagated, but the weight vector ``w``
is created with ``requires_grad=False``, so after ``backward()`` its ``.grad`` is
None while ``x.grad`` and ``b.grad`` are filled in. Fix: create ``w`` with
``requires_grad=True``.
"""

# gradcheck-expect: requires_grad_false w
# gradcheck-exit: 1

import torch

torch.manual_seed(0)

x = torch.randn(5, requires_grad=True)
w = torch.randn(5, requires_grad=False)  # <- BUG
b = torch.randn(1, requires_grad=True)

score = torch.dot(x, w) + b
score.backward()

print("score:", score.item())
print("x.grad:", x.grad)
print("w.grad:", w.grad)
print("b.grad:", b.grad)
