"""Family 5, plain script: linear regression by hand. ``W`` is cast after ``requires_grad=True``,
so it is a non-leaf; the update loop reads its ``.grad`` through a dict alias (``p``), finds None,
and skips it: ``W`` never learns.

Fix: ``W = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)``.
"""

# gradcheck-expect: non_leaf W
# gradcheck-exit: 1

import torch

torch.manual_seed(0)
W = torch.randn(4, 3, requires_grad=True).to(torch.float64)  # <- BUG
b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
params = {"W": W, "b": b}
x, y = torch.randn(32, 4, dtype=torch.float64), torch.randn(32, 3, dtype=torch.float64)
for step in range(3):
    loss = (x @ W + b - y).pow(2).mean()
    loss.backward()
    with torch.no_grad():
        for _name, p in params.items():
            if p.grad is not None:
                p -= 0.1 * p.grad
                p.grad = None
    print(f"step {step} loss {loss.item():.4f}")
