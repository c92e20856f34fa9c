"""Family 1: a regulariser computed by a helper in another file returns a Python float."""

# gradcheck-expect: python_scalar_roundtrip model.reg.weight model.reg.bias
# gradcheck-exit: 1
# gradcheck-cause: helpers.py

import torch
from torch import nn
import torch.nn.functional as F

from helpers import scalar_penalty

torch.manual_seed(0)
model = nn.ModuleDict({"enc": nn.Linear(6, 12), "head": nn.Linear(12, 2), "reg": nn.Linear(12, 4)})
opt = torch.optim.SGD(model.parameters(), lr=0.05)
x, y = torch.randn(20, 6), torch.randint(0, 2, (20,))
for step in range(3):
    opt.zero_grad()
    h = torch.tanh(model["enc"](x))
    loss = F.cross_entropy(model["head"](h), y) + torch.tensor(scalar_penalty(model["reg"](h)))
    loss.backward()
    opt.step()
