"""Trains a small regression MLP whose prediction is clamped to a "valid" output range.

Bug: the prediction is clamped with ``torch.clamp(model(x), min=5.0, max=6.0)``, a range
copied from a dataset whose targets lay in ``[5, 6]``. Here the targets (and the
model's outputs) are near 0, so every output lies below ``min`` and the clamp is
saturated: it passes an all-zero gradient and every parameter of ``model`` gets a zero
gradient (the loss never moves). Fix: clamp to the range of these targets, or drop the
clamp during training.
"""

# gradcheck-expect: zero_grad_flow model.0.weight model.0.bias model.2.weight model.2.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


def main():
    torch.manual_seed(0)
    x = torch.randn(128, 8)
    y = 0.5 * x[:, :1] - 0.25 * x[:, 1:2] + 0.1 * torch.randn(128, 1)

    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    criterion = nn.MSELoss()

    for step in range(5):
        optimizer.zero_grad()
        pred = torch.clamp(model(x), min=5.0, max=6.0)  # <- BUG
        loss = criterion(pred, y)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
