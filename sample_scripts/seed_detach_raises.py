"""Smallest possible example of a loss that was cut off from the autograd graph.

All three tensors require grad, but the score is ``.detach()``-ed before
``backward()`` is called, so PyTorch raises ``RuntimeError: element 0 of tensors
does not require grad and does not have a grad_fn``. Fix: drop the ``.detach()``.
"""

# gradcheck-expect: loss_not_differentiable
# gradcheck-exit: 1

import torch

torch.manual_seed(0)

x = torch.randn(5, requires_grad=True)
w = torch.randn(5, requires_grad=True)
b = torch.randn(1, requires_grad=True)

score = (torch.dot(x, w) + b).detach()  # <- BUG
print("score:", score.item())
score.backward()

print("x.grad:", x.grad)
print("w.grad:", w.grad)
print("b.grad:", b.grad)
