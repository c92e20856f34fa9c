"""Trains a small MLP classifier with DistributedDataParallel on two CPU ranks (gloo).

Launch with ``torchrun --nproc_per_node=2 sample_scripts/ddp_unused_no_find.py``. Every rank
trains SGD steps on its own synthetic batch (seeded by rank); only rank 0 prints.

Bug: ``__init__`` defines ``self.unused`` (a projection left over from a refactor) that
``forward`` never calls. DDP is built with the default ``find_unused_parameters=False``, so its
reducer waits for gradients of ``model.unused.*`` that never come: the first step completes, the
second forward raises ``RuntimeError: Expected to have finished reduction in the prior iteration
before starting a new one`` on every rank and torchrun exits 1. DDP's message only lists
parameter indices (unless ``TORCH_DISTRIBUTED_DEBUG`` is set); gradcheck names the parameters in a
note on the traceback. Fix: delete the unused layer (or pass ``find_unused_parameters=True``).
"""

# gradcheck-expect: unused_parameter model.unused.weight model.unused.bias
# gradcheck-exit: 1
# gradcheck-launch: torchrun 2

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP


class Classifier(nn.Module):
    def __init__(self, in_dim=20, hidden=16, num_classes=4):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.unused = nn.Linear(hidden, hidden)  # <- BUG
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        return self.fc2(h)


def main():
    dist.init_process_group(backend="gloo")
    rank = dist.get_rank()

    torch.manual_seed(0)
    model = DDP(Classifier())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()

    gen = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(32, 20, generator=gen)
    y = torch.randint(0, 4, (32,), generator=gen)

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
