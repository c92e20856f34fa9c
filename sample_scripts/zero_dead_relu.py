"""Trains a two-layer MLP classifier on standardized synthetic features with SGD.

Bug: ``__init__`` initialises the first layer's bias to ``-10.0`` ("to start sparse"),
but the inputs are standardized, so ``fc1(x)`` is negative for every sample and every
unit of ``F.relu(self.fc1(x))`` is dead. The ReLU passes an all-zero gradient, so
``model.fc1.weight`` and ``model.fc1.bias`` get zero gradients, and so does
``model.fc2.weight`` (its input is all zeros); only ``model.fc2.bias`` learns. Fix:
keep the default bias initialisation (or a small constant such as ``0.0``/``0.01``).
"""

# gradcheck-expect: zero_grad_flow model.fc1.weight model.fc1.bias model.fc2.weight
# gradcheck-exit: 1

import torch
import torch.nn as nn
import torch.nn.functional as F


class MLP(nn.Module):
    def __init__(self, in_dim=16, hidden=32, num_classes=4):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        nn.init.constant_(self.fc1.bias, -10.0)  # <- UPSTREAM

    def forward(self, x):
        h = F.relu(self.fc1(x))  # <- BUG
        return self.fc2(h)


def main():
    torch.manual_seed(0)
    x = torch.randn(128, 16) * 3.0 + 1.0
    x = (x - x.mean(dim=0)) / x.std(dim=0)
    y = torch.randint(0, 4, (128,))

    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()

    for step in range(5):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
