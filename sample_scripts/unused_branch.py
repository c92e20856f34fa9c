"""Trains a classifier that also has an auxiliary head meant to regularise the shared trunk.

Bug: ``forward`` computes ``aux = self.aux_head(h)`` but neither returns it nor adds
it to the loss, so the branch is dead code and ``model.aux_head.weight`` and
``model.aux_head.bias`` never get a gradient. Fix: return ``aux`` as well and add an
auxiliary loss term (or delete the head).
"""

# gradcheck-expect: unused_parameter model.aux_head.weight model.aux_head.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class NetWithAux(nn.Module):
    def __init__(self, in_dim=16, hidden=32, num_classes=4):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)
        self.aux_head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        h = self.trunk(x)
        aux = self.aux_head(h)  # noqa: F841  # <- BUG
        return self.head(h)


def main():
    torch.manual_seed(0)
    x = torch.randn(96, 16)
    y = torch.randint(0, 4, (96,))

    model = NetWithAux()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()

    for step in range(5):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
