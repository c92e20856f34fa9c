"""Family 3: a helper in another file freezes the encoder (p.requires_grad = False) after the
optimizer was built to train it; the encoder never learns."""

# gradcheck-expect: requires_grad_false model.enc.weight model.enc.bias
# gradcheck-exit: 1
# gradcheck-cause: helpers.py

import torch
from torch import nn
import torch.nn.functional as F

from helpers import set_trainable

torch.manual_seed(0)
model = nn.ModuleDict({"enc": nn.Linear(6, 8), "head": nn.Linear(8, 3)})
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
set_trainable(model["enc"], False)
x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
for step in range(3):
    opt.zero_grad()
    loss = F.cross_entropy(model["head"](torch.relu(model["enc"](x))), y)
    loss.backward()
    opt.step()
