"""Trains a small autoencoder sharded with FSDP2 (``fully_shard``) on two CPU ranks (gloo).

Launch with ``torchrun --nproc_per_node=2 sample_scripts/fsdp_detach.py``. The encoder is sharded
on its own, then the whole model; every rank trains three Adam steps on its own synthetic batch
(seeded by rank); only rank 0 prints.

Bug: ``forward`` calls ``.detach()`` on the encoder output, so the reconstruction loss only
reaches the decoder and the encoder's sharded parameters ``model.enc.*`` never get a gradient;
the run finishes without an error. FSDP runs the forward on temporary unsharded copies of the
parameters; gradcheck reports the cut on the user's own parameters (``model.enc.weight``), once,
on both ranks. Fix: remove the ``.detach()``.
"""

# gradcheck-expect: detach model.enc.weight model.enc.bias
# gradcheck-exit: 1
# gradcheck-launch: torchrun 2

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.fsdp import fully_shard


class AutoEncoder(nn.Module):
    def __init__(self, in_dim=16, code=8):
        super().__init__()
        self.enc = nn.Linear(in_dim, code)
        self.dec = nn.Linear(code, in_dim)

    def forward(self, x):
        h = torch.relu(self.enc(x)).detach()  # <- BUG
        return self.dec(h)


def main():
    dist.init_process_group(backend="gloo")
    rank = dist.get_rank()

    torch.manual_seed(0)
    model = AutoEncoder()
    fully_shard(model.enc)
    fully_shard(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    criterion = nn.MSELoss()

    gen = torch.Generator().manual_seed(100 + rank)
    data = torch.randn(32, 16, generator=gen)

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
