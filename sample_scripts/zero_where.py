"""Trains a denoiser that routes outlier inputs through a separate "robust" branch.

Bug: the routing threshold ``x.abs() > 100.0`` is in raw units, but the inputs are
standardized, so the condition of ``torch.where`` is never true: every output comes
from ``model.base`` and ``model.branch.weight``/``model.branch.bias`` get all-zero
gradients (the branch never learns). Fix: express the threshold in standardized units
(for example ``x.abs() > 2.5``).
"""

# gradcheck-expect: zero_grad_flow model.branch.weight model.branch.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class RoutedDenoiser(nn.Module):
    def __init__(self, dim=8, hidden=32):
        super().__init__()
        self.base = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))
        self.branch = nn.Linear(dim, dim)


def main():
    torch.manual_seed(0)
    clean = torch.randn(128, 8)
    x = clean + 0.3 * torch.randn(128, 8)
    x = (x - x.mean(dim=0)) / x.std(dim=0)

    model = RoutedDenoiser()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    criterion = nn.MSELoss()

    for step in range(5):
        optimizer.zero_grad()
        out = torch.where(x.abs() > 100.0, model.branch(x), model.base(x))  # <- BUG
        loss = criterion(out, clean)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
