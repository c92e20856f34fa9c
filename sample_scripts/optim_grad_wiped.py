"""Trains an MLP regressor with Adam and gradient accumulation over 4 micro-batches.

Bug: at the end of each accumulation window ``optimizer.zero_grad()`` is called after
the last ``loss.backward()`` but *before* ``optimizer.step()``, so every accumulated
gradient is wiped (set to None) and ``step()`` has nothing to apply: the weights never
change and the loss stays flat. Nothing crashes. Fix: call ``optimizer.zero_grad()``
after ``optimizer.step()`` (or at the start of the next window).
"""

# gradcheck-expect: grad_wiped model.net.0.weight model.net.0.bias model.net.2.weight model.net.2.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class Regressor(nn.Module):
    def __init__(self, in_dim=8, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


def main():
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = x[:, :3].sum(dim=1) + 0.1 * torch.randn(256)
    micro_batches = list(zip(x.split(16), y.split(16), strict=True))

    model = Regressor()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    criterion = nn.MSELoss()
    accum_steps = 4

    for step in range(4):
        window = micro_batches[step * accum_steps : (step + 1) * accum_steps]
        total = 0.0
        for xb, yb in window:
            loss = criterion(model(xb), yb) / accum_steps
            loss.backward()
            total += loss.item()
        optimizer.zero_grad()  # <- BUG
        optimizer.step()
        print(f"step {step}: loss {total:.4f}")


if __name__ == "__main__":
    main()
