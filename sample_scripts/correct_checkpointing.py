"""Trains a small residual MLP with activation checkpointing, both flavours of it.

The first half of the blocks use ``torch.utils.checkpoint`` with ``use_reentrant=True`` (the
old default, still what many training codebases pass): their forward runs under no_grad and is
re-run inside ``backward()``, so the loss's graph does not show their parameters at all. The
second half use ``use_reentrant=False``. There is no bug: every parameter learns, and neither the
hidden parameters nor torch's own no_grad inside the checkpoint may be reported.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, h):
        return h + self.ff(self.norm(h))


class ResidualMLP(nn.Module):
    def __init__(self, dim=32, depth=4, classes=5):
        super().__init__()
        self.embed = nn.Linear(16, dim)
        self.blocks = nn.ModuleList(Block(dim) for _ in range(depth))
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        h = self.embed(x)
        for i, block in enumerate(self.blocks):
            reentrant = i < len(self.blocks) // 2
            h = checkpoint(block, h, use_reentrant=reentrant)
        return self.head(h)


def main():
    torch.manual_seed(0)
    x = torch.randn(64, 16)
    y = torch.randint(0, 5, (64,))
    model = ResidualMLP()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    for step in range(4):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
