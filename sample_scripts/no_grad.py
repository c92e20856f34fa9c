"""Trains a backbone + linear head on synthetic features with Adam for a few steps.

Bug: the training loop computes the backbone features inside ``with torch.no_grad():``
(copied from an evaluation loop) even though the backbone is in the optimizer, so
no graph is recorded for it and every ``model.backbone.*`` parameter keeps
``grad is None``. Fix: compute the features outside the ``no_grad`` block.
"""

# gradcheck-expect: no_grad model.backbone.0.weight model.backbone.0.bias model.backbone.2.weight model.backbone.2.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, in_dim=16, hidden=32, num_classes=4):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
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
        with torch.no_grad():  # <- BUG
            feats = model.backbone(x)
        logits = model.head(feats)
        loss = criterion(logits, y)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
