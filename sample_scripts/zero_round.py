"""Trains a regression model that adds a learned, quantized offset to its hidden features.

Bug: the offset branch is quantized in ``forward`` with ``torch.round(self.scale(x))``.
``round`` is piecewise constant: its derivative is zero everywhere, so
``model.scale.weight`` and ``model.scale.bias`` get all-zero gradients and never learn,
while ``model.body`` and ``model.head`` train normally. Fix: use a straight-through
estimator, ``s + (torch.round(s) - s).detach()`` with ``s = self.scale(x)``, or quantize
only at inference time.
"""

# gradcheck-expect: nondifferentiable_op model.scale.weight model.scale.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class QuantOffsetNet(nn.Module):
    def __init__(self, in_dim=10, hidden=16):
        super().__init__()
        self.body = nn.Linear(in_dim, hidden)
        self.scale = nn.Linear(in_dim, hidden)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        h = torch.tanh(self.body(x))
        q = torch.round(self.scale(x))  # <- BUG
        return self.head(h + q)


def main():
    torch.manual_seed(0)
    x = torch.randn(128, 10)
    y = x[:, :3].sum(dim=1, keepdim=True) + 0.1 * torch.randn(128, 1)

    model = QuantOffsetNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    criterion = nn.MSELoss()

    for step in range(5):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
