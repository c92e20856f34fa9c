"""Family 3/4: LightningModule.freeze() (library code) called by the user on the encoder after
the optimizer was built: the finding points at the user's call, not into Lightning."""

# gradcheck-expect: requires_grad_false model.encoder.net.weight model.encoder.net.bias
# gradcheck-exit: 1

import pytorch_lightning as pl
import torch
from torch import nn


class Encoder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(6, 6)

    def forward(self, x):
        return torch.relu(self.net(x))


torch.manual_seed(0)
model = nn.Module()
model.encoder, model.head = Encoder(), nn.Linear(6, 1)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
model.encoder.freeze()  # <- BUG
x, y = torch.randn(10, 6), torch.randn(10, 1)
for step in range(3):
    model.encoder.train()
    loss = ((model.head(model.encoder(x)) - y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
