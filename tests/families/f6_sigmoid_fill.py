"""Family 6: the sigmoid's output is overwritten through .data; SigmoidBackward uses that output
(y * (1 - y) = 0), so the encoder gets an all-zero gradient."""

# gradcheck-expect: data_attr enc.weight enc.bias
# gradcheck-exit: 1

import torch
from torch import nn

torch.manual_seed(0)
enc, dec = nn.Linear(5, 5), nn.Linear(5, 1)
opt = torch.optim.SGD([*enc.parameters(), *dec.parameters()], lr=0.1)
x, y = torch.randn(12, 5), torch.randn(12, 1)
for step in range(3):
    opt.zero_grad()
    gate = torch.sigmoid(enc(x))
    gate.data.fill_(1.0)  # <- BUG
    loss = ((dec(gate) - y) ** 2).mean()
    loss.backward()
    opt.step()
