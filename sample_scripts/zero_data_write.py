"""Trains a two-layer Tanh MLP classifier with SGD after a "custom" re-initialisation.

Bug: right after building the model the script zeroes the output layer in place,
``model.fc2.weight.data.zero_()``. With ``fc2.weight`` all zero, no gradient reaches the
hidden layer: ``model.fc1.weight`` and ``model.fc1.bias`` get all-zero gradients (the
``.data`` write also bypasses autograd, so nothing warns). Fix: keep the default
initialisation, or use ``nn.init`` on a layer that is not needed to carry the gradient.
"""

# gradcheck-expect: data_attr model.fc1.weight model.fc1.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class MLP(nn.Module):
    def __init__(self, in_dim=16, hidden=32, num_classes=4):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.act = nn.Tanh()
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def main():
    torch.manual_seed(0)
    x = torch.randn(128, 16)
    y = torch.randint(0, 4, (128,))

    model = MLP()
    model.fc2.weight.data.zero_()  # <- BUG
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
