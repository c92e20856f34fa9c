"""Trains a ReLU MLP classifier where some hidden units are dead for the batch, on purpose.

A few first-layer units start with a strongly negative bias, so they never fire on this
batch and their rows of ``model.fc1.weight``/``model.fc1.bias`` get zero gradient. The
other units are alive, so every parameter tensor still receives a non-zero gradient and
the model learns. There is no bug: gradcheck may mention the partly dead layer as
information, but must report no error.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
import torch.nn as nn
import torch.nn.functional as F


class MLP(nn.Module):
    def __init__(self, in_dim=16, hidden=32, num_classes=4):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        with torch.no_grad():
            self.fc1.bias[:8] = -10.0

    def forward(self, x):
        h = F.relu(self.fc1(x))
        return self.fc2(h)


def main():
    torch.manual_seed(0)
    x = torch.randn(128, 16)
    y = torch.randint(0, 4, (128,))

    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()

    for step in range(5):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            dead = (F.relu(model.fc1(x)) == 0).all(dim=0).sum().item()
        print(f"step {step}: loss {loss.item():.4f} dead units {dead}")


if __name__ == "__main__":
    main()
