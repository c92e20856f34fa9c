"""Family 5, the ``.grad`` read in a helper of the user's project: a two-layer net trained with
``sgd_step`` from ``userlib_f5``. ``W1`` is scaled after ``requires_grad=True``, so it is a
non-leaf: the helper reads ``p.grad`` (None) and crashes with ``TypeError``.

Fix: ``W1 = (torch.randn(8, 16) * 0.1).requires_grad_()``.
"""

# gradcheck-expect: non_leaf W1
# gradcheck-exit: 1

import torch
from userlib_f5 import sgd_step

torch.manual_seed(0)
W1 = torch.randn(8, 16, requires_grad=True) * 0.1  # <- BUG
b1 = torch.zeros(16, requires_grad=True)
W2 = (torch.randn(16, 1) * 0.1).requires_grad_()
x, y = torch.randn(64, 8), torch.randn(64, 1)
for step in range(3):
    loss = (torch.tanh(x @ W1 + b1) @ W2 - y).pow(2).mean()
    loss.backward()
    sgd_step([W2, b1, W1], lr=0.05)
    print(f"step {step} loss {loss.item():.4f}")
