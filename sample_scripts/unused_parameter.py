"""Trains a three-layer MLP classifier with SGD for a few steps.

Bug: ``__init__`` defines the output layer ``self.fc3`` but ``forward`` returns the
32-wide output of ``fc2`` instead of calling it (``CrossEntropyLoss`` happily accepts
32 logits for 4 classes), so ``model.fc3.weight`` and ``model.fc3.bias`` are in the
optimizer but never get a gradient. Fix: finish ``forward`` with
``return self.fc3(torch.relu(h))``.
"""

# gradcheck-expect: unused_parameter model.fc3.weight model.fc3.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class MLP(nn.Module):
    def __init__(self, in_dim=20, hidden=32, num_classes=4):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, num_classes)  # <- BUG

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        h = self.fc2(h)
        return h


def main():
    torch.manual_seed(0)
    x = torch.randn(128, 20)
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
