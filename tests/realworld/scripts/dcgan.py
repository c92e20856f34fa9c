"""A DCGAN-style two-optimizer GAN (small MLPs), 3 steps. `netD(fake.detach())` in the
discriminator step is correct. Bug (--bug): the generator step also detaches the fake batch,
so the generator never learns."""

import sys

import torch
from torch import nn

BUG = "--bug" in sys.argv
torch.manual_seed(0)
netG = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh())
netD = nn.Sequential(nn.Linear(16, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
criterion = nn.BCEWithLogitsLoss()

for step in range(3):
    real = torch.randn(16, 16)
    noise = torch.randn(16, 8)
    fake = netG(noise)
    netD.zero_grad()
    errD = criterion(netD(real), torch.ones(16, 1)) + criterion(
        netD(fake.detach()), torch.zeros(16, 1)
    )
    errD.backward()
    optimizerD.step()

    netG.zero_grad()
    if BUG:
        output = netD(fake.detach())  # BUG
    else:
        output = netD(fake)
    errG = criterion(output, torch.ones(16, 1))
    errG.backward()
    optimizerG.step()
    print(f"step {step}: D {errD.item():.3f} G {errG.item():.3f}")
