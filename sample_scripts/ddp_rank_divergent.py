"""Trains a regressor with an auxiliary head under DistributedDataParallel on two CPU ranks (gloo).

Launch with ``torchrun --nproc_per_node=2 sample_scripts/ddp_rank_divergent.py``. Every rank
trains three SGD steps on its own synthetic batch (seeded by rank); only rank 0 prints.

Bug: ``forward`` adds the auxiliary head only on rank 0 (a leftover debugging condition, kept
on one line so the rank condition and the skipped call are the same line), so on
rank 1 ``model.aux.weight`` and ``model.aux.bias`` get no gradient locally. DDP is built with
``find_unused_parameters=True``: it all-reduces rank 0's gradient with rank 1's "unused" zeros, so
after ``backward()`` every rank sees a (halved) gradient and the divergence is hidden by the
averaging; the two ranks also train different functions. gradcheck checks each rank before the
all-reduce and reports ``rank_divergent`` for rank 1. Fix: drop the rank condition and always add
the auxiliary head.
"""

# gradcheck-expect: rank_divergent model.aux.weight model.aux.bias
# gradcheck-exit: 1
# gradcheck-launch: torchrun 2
# gradcheck-ranks: 1

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP


class AuxRegressor(nn.Module):
    def __init__(self, in_dim=20, hidden=16):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 1)
        self.aux = nn.Linear(hidden, 1)

    def forward(self, x):
        h = self.body(x)
        out = self.head(h)
        out = out + 0.1 * self.aux(h) if dist.get_rank() == 0 else out  # <- BUG
        return out


def main():
    dist.init_process_group(backend="gloo")
    rank = dist.get_rank()

    torch.manual_seed(0)
    model = DDP(AuxRegressor(), find_unused_parameters=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    criterion = nn.MSELoss()

    gen = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(32, 20, generator=gen)
    y = x[:, :1] + 0.5 * x[:, 1:2]

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
