"""Family 6: attention weights "reset" with .data.zero_() after softmax; SoftmaxBackward uses the
output, so the query/key projections get all-zero gradients."""

# gradcheck-expect: data_attr attn.q.weight attn.q.bias attn.k.weight attn.k.bias attn.v.weight attn.v.bias
# gradcheck-exit: 1

import torch
from torch import nn


class Attn(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        w = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2), dim=-1)
        w.data.zero_()  # <- BUG
        return w @ self.v(x) + x


torch.manual_seed(0)
attn = Attn()
opt = torch.optim.SGD(attn.parameters(), lr=0.1)
x = torch.randn(2, 5, 8)
for step in range(3):
    opt.zero_grad()
    attn(x).pow(2).mean().backward()
    opt.step()
