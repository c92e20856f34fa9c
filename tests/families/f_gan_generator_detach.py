"""Issue 14 (4): the classic GAN bug — `netD(fake.detach())` in the *generator* step. The
generator has its own optimizer, so it is expected at the backward after which `optimizerG`
steps: the detach is the cause (error at its line), not a `step_without_grad` warning. The same
detach in the discriminator step is correct."""

# gradcheck-expect: detach netG.0.weight netG.0.bias netG.2.weight netG.2.bias
# gradcheck-exit: 1

import torch
from torch import nn

torch.manual_seed(0)
netG = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8))
netD = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4)
optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4)
bce = nn.BCEWithLogitsLoss()
real = torch.randn(32, 8)
for step in range(3):
    fake = netG(torch.randn(32, 4))
    netD.zero_grad()
    errD = bce(netD(real), torch.ones(32, 1)) + bce(netD(fake.detach()), torch.zeros(32, 1))
    errD.backward()
    optimizerD.step()
    netG.zero_grad()
    errG = bce(netD(fake.detach()), torch.ones(32, 1))  # <- BUG
    errG.backward()
    optimizerG.step()
