"""Trains a small autoencoder with DistributedDataParallel on two CPU ranks (gloo).

Launch with ``torchrun --nproc_per_node=2 sample_scripts/ddp_detach.py``. Every rank trains three
Adam steps on its own synthetic batch (seeded by rank); only rank 0 prints.

Bug: ``forward`` calls ``.detach()`` on the encoder output on every rank, so the reconstruction
loss only reaches the decoder and ``model.encoder.0.*`` keeps ``grad is None`` everywhere. DDP is
built with ``find_unused_parameters=True``, which silently accepts parameters that never get a
gradient, so the run finishes and the encoder never learns. gradcheck reports the finding once,
naming the ranks it occurred on (both). Fix: remove the ``.detach()``.
"""

# gradcheck-expect: detach model.encoder.0.weight model.encoder.0.bias
# gradcheck-exit: 1
# gradcheck-launch: torchrun 2

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP


class AutoEncoder(nn.Module):
    def __init__(self, in_dim=20, code=8):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(in_dim, code), nn.ReLU())
        self.decoder = nn.Linear(code, in_dim)

    def forward(self, x):
        h = self.encoder(x).detach()  # <- BUG
        return self.decoder(h)


def main():
    dist.init_process_group(backend="gloo")
    rank = dist.get_rank()

    torch.manual_seed(0)
    model = DDP(AutoEncoder(), find_unused_parameters=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    criterion = nn.MSELoss()

    gen = torch.Generator().manual_seed(100 + rank)
    data = torch.randn(32, 20, generator=gen)

    for step in range(3):
        optimizer.zero_grad()
        loss = criterion(model(data), data)
        loss.backward()
        optimizer.step()
        if rank == 0:
            print(f"step {step}: loss {loss.item():.4f}")

    dist.destroy_process_group()


if __name__ == "__main__":
    main()
