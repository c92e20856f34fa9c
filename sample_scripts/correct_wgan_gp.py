"""Trains a WGAN-GP on a 2-D Gaussian blob.

The critic loss is ``D(fake).mean() - D(real).mean() + 10 * gp`` where the gradient penalty ``gp``
comes from ``torch.autograd.grad(D(interp).sum(), interp, create_graph=True)`` on random
interpolates. There is no bug. The last bias of the critic gets an exactly zero gradient by
design (it cancels in the difference of means: an info line, not an error), and ``interp`` gets
its gradient from ``autograd.grad``, never in ``.grad``.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
from torch import nn


def main():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
    D = nn.Sequential(
        nn.Linear(2, 32), nn.LeakyReLU(0.2), nn.Linear(32, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1)
    )
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.0, 0.9))
    real_data = torch.randn(512, 2) * 0.5 + torch.tensor([2.0, -1.0])

    for step in range(5):
        real = real_data[torch.randint(0, 512, (64,))]
        z = torch.randn(64, 4)
        fake = G(z)

        eps = torch.rand(64, 1)
        interp = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
        (g,) = torch.autograd.grad(D(interp).sum(), interp, create_graph=True)
        gp = ((g.norm(dim=1) - 1) ** 2).mean()
        loss_d = D(fake.detach()).mean() - D(real).mean() + 10 * gp
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()

        loss_g = -D(G(z)).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        print(f"step {step}: loss_d {loss_d.item():.4f} loss_g {loss_g.item():.4f}")


if __name__ == "__main__":
    main()
