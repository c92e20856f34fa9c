"""Correct version of the two seed examples: a linear score x·w + b and its gradients.

Every tensor is created with ``requires_grad=True`` and nothing is detached, so
after ``backward()`` ``x.grad``, ``w.grad`` and ``b.grad`` are all filled in.
gradcheck should report nothing.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch

torch.manual_seed(0)

x = torch.randn(5, requires_grad=True)
w = torch.randn(5, requires_grad=True)
b = torch.randn(1, requires_grad=True)

score = torch.dot(x, w) + b
score.backward()

print("score:", score.item())
print("x.grad:", x.grad)
print("w.grad:", w.grad)
print("b.grad:", b.grad)
