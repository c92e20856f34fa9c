"""Trains an encoder + classifier where the encoder features are clipped with NumPy.

Bug: the features leave PyTorch (``feats.detach().numpy()``), are clipped in place
with ``np.clip(..., out=f)`` and come back through ``torch.from_numpy(f)``, which
creates a tensor with no autograd history, so every ``model.encoder.*`` parameter
keeps ``grad is None``. Fix: stay in PyTorch, e.g. ``h = feats.clamp(-3, 3)``.
"""

# gradcheck-expect: numpy_roundtrip model.encoder.0.weight model.encoder.0.bias model.encoder.2.weight model.encoder.2.bias
# gradcheck-exit: 1

import numpy as np
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, in_dim=16, hidden=32, num_classes=4):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden)
        )
        self.head = nn.Linear(hidden, num_classes)


def main():
    torch.manual_seed(0)
    x = torch.randn(96, 16)
    y = torch.randint(0, 4, (96,))

    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()

    for step in range(5):
        optimizer.zero_grad()
        feats = model.encoder(x)
        f = feats.detach().numpy()
        np.clip(f, -3.0, 3.0, out=f)
        h = torch.from_numpy(f)  # <- BUG
        loss = criterion(model.head(h), y)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
