"""Fits a linear regression y = Xw + b by hand-written gradient descent in float64.

Bug: ``w`` is created with ``requires_grad=True`` and then converted with
``.to(torch.float64)``, which returns a new non-leaf tensor, so ``w.grad`` is never
populated and the manual update ``w -= lr * w.grad`` crashes with ``TypeError``.
Fix: create the tensor in the right dtype directly,
``torch.randn(3, 1, dtype=torch.float64, requires_grad=True)``.
"""

# gradcheck-expect: non_leaf w
# gradcheck-exit: 1

import torch

torch.manual_seed(0)
X = torch.randn(100, 3, dtype=torch.float64)
true_w = torch.tensor([[2.0], [-1.0], [0.5]], dtype=torch.float64)
y = X @ true_w + 0.3 + 0.01 * torch.randn(100, 1, dtype=torch.float64)

w = torch.randn(3, 1, requires_grad=True).to(torch.float64)  # <- BUG
b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
lr = 0.1

for step in range(10):
    pred = X @ w + b
    loss = ((pred - y) ** 2).mean()
    loss.backward()
    print(f"step {step}: loss {loss.item():.4f}")
    with torch.no_grad():
        w -= lr * w.grad
        b -= lr * b.grad
        w.grad.zero_()
        b.grad.zero_()

print("learned w:", w.squeeze().tolist(), "b:", b.item())
