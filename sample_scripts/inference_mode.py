"""Trains a backbone + linear head with AdamW on synthetic data for a few steps.

Bug: the backbone features are computed under ``with torch.inference_mode():`` and
then ``.clone()``-d so autograd accepts them; the clone has no history, so every
``model.backbone.*`` parameter keeps ``grad is None`` although the backbone is in
the optimizer. Fix: compute the features outside ``inference_mode`` (and drop the
``.clone()``).
"""

# gradcheck-expect: inference_mode model.backbone.0.weight model.backbone.0.bias model.backbone.2.weight model.backbone.2.bias
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
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()

    for step in range(5):
        optimizer.zero_grad()
        with torch.inference_mode():  # <- BUG
            feats = model.backbone(x)
        feats = feats.clone()
        loss = criterion(model.head(feats), y)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
