"""Trains a StyleGAN-style pair with an R1 penalty on the discriminator and a path-length
penalty on the generator.

R1: ``torch.autograd.grad(D(real).sum(), real, create_graph=True)`` on real samples that were
made to require grad; path length: the gradient of ``(G(w) * noise).sum()`` with respect to the
latent ``w``. Both penalties are added to the non-saturating losses. There is no bug: ``real``
and ``w`` get their gradients from ``autograd.grad`` only, and every parameter learns.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
from torch import nn
from torch.nn import functional as F


def main():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(8, 32), nn.LeakyReLU(0.2), nn.Linear(32, 2))
    D = nn.Sequential(nn.Linear(2, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99))
    data = torch.randn(512, 2) * 0.3 + 1.0
    pl_mean = torch.zeros(())

    for step in range(5):
        real = data[torch.randint(0, 512, (32,))].requires_grad_(True)
        real_score = D(real)
        (r1_grad,) = torch.autograd.grad(real_score.sum(), real, create_graph=True)
        r1 = r1_grad.pow(2).sum(dim=1).mean()
        fake = G(torch.randn(32, 8)).detach()
        loss_d = F.softplus(D(fake)).mean() + F.softplus(-real_score).mean() + 5.0 * r1
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()

        w = torch.randn(32, 8, requires_grad=True)
        out = G(w)
        noise = torch.randn_like(out) / 2**0.5
        (pl_grad,) = torch.autograd.grad((out * noise).sum(), w, create_graph=True)
        lengths = pl_grad.pow(2).sum(dim=1).sqrt()
        pl_mean = 0.99 * pl_mean + 0.01 * lengths.mean().detach()
        loss_g = F.softplus(-D(out)).mean() + 2.0 * (lengths - pl_mean).pow(2).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        print(f"step {step}: loss_d {loss_d.item():.4f} loss_g {loss_g.item():.4f}")


if __name__ == "__main__":
    main()
