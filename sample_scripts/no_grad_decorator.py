"""Trains a backbone + linear head with Adam, using a helper that extracts backbone features.

Bug: the helper ``extract_features`` is decorated with ``@torch.no_grad()`` (it was
written for inference), so during training the backbone output carries no graph
and every ``model.backbone.*`` parameter keeps ``grad is None``. Fix: remove the
decorator (or use a separate helper for inference).
"""

# gradcheck-expect: no_grad model.backbone.0.weight model.backbone.0.bias model.backbone.2.weight model.backbone.2.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, in_dim=16, hidden=32, num_classes=4):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.head = nn.Linear(hidden, num_classes)


@torch.no_grad()  # <- BUG
def extract_features(model, x):
    return model.backbone(x)


def main():
    torch.manual_seed(0)
    x = torch.randn(96, 16)
    y = torch.randint(0, 4, (96,))

    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()

    for step in range(5):
        optimizer.zero_grad()
        feats = extract_features(model, x)
        loss = criterion(model.head(feats), y)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
