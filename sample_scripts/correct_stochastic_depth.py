"""Trains a residual MLP with batch-mode stochastic depth (as ``torchvision.ops.stochastic_depth``
with ``mode="batch"``): each block's branch is dropped for the whole batch with probability 0.3.

No bug: a dropped branch gets an all-zero gradient in that step and a non-zero one in the others,
so gradcheck reports it as information (with the calls it was dropped in), not as an error.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, dim=16, p=0.3):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.p = p

    def forward(self, x):
        if not self.training:
            return x + self.fc(x)
        keep = (torch.rand(()) >= self.p).float()
        return x + torch.relu(self.fc(x)) * keep / (1 - self.p)


def main():
    torch.manual_seed(3)
    x = torch.randn(64, 16)
    y = torch.randn(64, 1)
    model = nn.Sequential(Block(), Block(), Block(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(10):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
