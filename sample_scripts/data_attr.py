"""Trains a text-feature classifier (encoder + classifier head) with SGD for a few steps.

Bug: ``forward`` takes ``.data`` of the encoder output, which returns a tensor that
shares storage but is cut off from the autograd graph, so every ``model.encoder.*``
parameter keeps ``grad is None``. Fix: use the encoder output directly (drop
``.data``).
"""

# gradcheck-expect: data_attr model.encoder.0.weight model.encoder.0.bias model.encoder.2.weight model.encoder.2.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class Classifier(nn.Module):
    def __init__(self, in_dim=32, hidden=24, num_classes=3):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden)
        )
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x):
        h = self.encoder(x).data  # <- BUG
        return self.classifier(torch.relu(h))


def main():
    torch.manual_seed(0)
    x = torch.randn(128, 32)
    y = torch.randint(0, 3, (128,))

    model = Classifier()
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
