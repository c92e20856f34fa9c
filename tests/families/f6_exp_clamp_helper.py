"""Family 6: a helper in another file clamps exp() output through .data; ExpBackward multiplies
by the (now zero) output, so the layer before it gets an all-zero gradient."""

# gradcheck-expect: data_attr model.0.weight model.0.bias model.1.weight
# gradcheck-exit: 1
# gradcheck-cause: helpers.py

import torch
from torch import nn

from helpers import stabilise_

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(10, 4), torch.randn(10, 1)
for step in range(3):
    opt.zero_grad()
    rates = stabilise_(torch.exp(model[0](x)))
    loss = ((model[1](rates) - y) ** 2).mean()
    loss.backward()
    opt.step()
