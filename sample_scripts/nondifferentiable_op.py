"""Trains a gated classifier: a learned gate masks the output of the main body.

Bug: the gate is binarised with a comparison, ``torch.sigmoid(model.gate(x)) > 0.5``;
comparisons have no gradient, so the mask is a constant and ``model.gate.weight``
and ``model.gate.bias`` keep ``grad is None``. Fix: use the soft gate
``torch.sigmoid(model.gate(x))`` (or a straight-through estimator).
"""

# gradcheck-expect: nondifferentiable_op model.gate.weight model.gate.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class GatedNet(nn.Module):
    def __init__(self, in_dim=16, hidden=32, num_classes=4):
        super().__init__()
        self.gate = nn.Linear(in_dim, num_classes)
        self.body = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )


def main():
    torch.manual_seed(0)
    x = torch.randn(96, 16)
    y = torch.randint(0, 4, (96,))

    model = GatedNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()

    for step in range(5):
        optimizer.zero_grad()
        mask = (torch.sigmoid(model.gate(x)) > 0.5).float()  # <- BUG
        out = model.body(x) * mask
        loss = criterion(out, y)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f} (gate open {mask.mean().item():.2f})")


if __name__ == "__main__":
    main()
