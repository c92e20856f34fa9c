"""Trains a residual MLP whose hidden blocks are stored in a plain Python list.

Bug: ``self.blocks = [nn.Linear(16, 16) for _ in range(2)]`` is a plain list, so
the blocks are not registered as submodules: they do get gradients in ``backward()``,
but ``model.parameters()`` (and therefore the optimizer, ``state_dict()`` and
``.to(device)``) never sees them and they are never updated. Fix: use
``nn.ModuleList([...])``.
"""

# gradcheck-expect: unregistered_parameter model.blocks[0].weight model.blocks[0].bias model.blocks[1].weight model.blocks[1].bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class ResidualMLP(nn.Module):
    def __init__(self, in_dim=8, dim=16, num_classes=3):
        super().__init__()
        self.inp = nn.Linear(in_dim, dim)
        self.blocks = [nn.Linear(16, 16) for _ in range(2)]  # <- BUG
        self.out = nn.Linear(dim, num_classes)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        for block in self.blocks:
            h = h + torch.relu(block(h))
        return self.out(h)


def main():
    torch.manual_seed(0)
    x = torch.randn(96, 8)
    y = torch.randint(0, 3, (96,))

    model = ResidualMLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    criterion = nn.CrossEntropyLoss()

    for step in range(5):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")
    print("parameters seen by the optimizer:", sum(p.numel() for p in model.parameters()))


if __name__ == "__main__":
    main()
