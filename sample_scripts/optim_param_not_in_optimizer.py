"""Trains a backbone + classification head with SGD + momentum on synthetic data.

Bug: the optimizer is built from ``model.backbone.parameters()`` only (copied from a
linear-probing script that did the opposite), so the ``model.head.*`` parameters get a
gradient every step but no optimizer ever updates them: the head stays at its random
initialization while the backbone tries to compensate. Nothing crashes. Fix: build the
optimizer from ``model.parameters()``.
"""

# gradcheck-expect: param_not_in_optimizer model.head.weight model.head.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class Classifier(nn.Module):
    def __init__(self, in_dim=20, hidden=32, num_classes=4):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def main():
    torch.manual_seed(0)
    x = torch.randn(128, 20)
    y = torch.randint(0, 4, (128,))

    model = Classifier()
    optimizer = torch.optim.SGD(model.backbone.parameters(), lr=0.05, momentum=0.9)  # <- BUG
    criterion = nn.CrossEntropyLoss()

    for step in range(6):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
