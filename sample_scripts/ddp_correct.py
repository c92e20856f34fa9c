"""Trains a small MLP regressor with DistributedDataParallel on two CPU ranks (gloo).

Launch with ``torchrun --nproc_per_node=2 sample_scripts/ddp_correct.py``. Every rank builds the
same model (DDP broadcasts rank 0's weights anyway), trains three SGD steps on its own synthetic
batch (seeded by rank) and DDP averages the gradients; only rank 0 prints.

No bug: every parameter gets a gradient on every rank, so ``gradcheck`` must come out clean.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0
# gradcheck-launch: torchrun 2

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP


class Regressor(nn.Module):
    def __init__(self, in_dim=20, hidden=16):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        h = self.encoder(x)
        return self.head(h)


def main():
    dist.init_process_group(backend="gloo")
    rank = dist.get_rank()

    torch.manual_seed(0)
    model = DDP(Regressor())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    criterion = nn.MSELoss()

    gen = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(32, 20, generator=gen)
    y = x[:, :1] - 0.5 * x[:, 1:2]

    for step in range(3):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        if rank == 0:
            print(f"step {step}: loss {loss.item():.4f}")

    dist.destroy_process_group()


if __name__ == "__main__":
    main()
