"""Trains an MLP classifier whose loss is supposed to skip samples labelled ``IGNORE`` (7).

Bug: the mask is built with ``==`` instead of ``!=``: ``mask = (y == IGNORE).float()``.
No sample carries label 7, so the mask is all zero, ``(per_sample * mask).sum()`` is 0
and every parameter of ``model`` gets an all-zero gradient (the printed loss is 0 and
nothing trains). Fix: ``mask = (y != IGNORE).float()`` and divide by ``mask.sum()``.
"""

# gradcheck-expect: zero_grad_flow model.0.weight model.0.bias model.2.weight model.2.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE = 7


def main():
    torch.manual_seed(0)
    x = torch.randn(128, 12)
    y = torch.randint(0, 5, (128,))

    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    for step in range(5):
        optimizer.zero_grad()
        per_sample = F.cross_entropy(model(x), y, reduction="none")
        mask = (y == IGNORE).float()
        loss = (per_sample * mask).sum() / len(y)  # <- BUG
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
