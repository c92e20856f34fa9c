"""Family 6: inside forward, the tanh activations are saturated in place through .data;
TanhBackward computes 1 - y**2 = 0 from the overwritten output."""

# gradcheck-expect: data_attr model.fc1.weight model.fc1.bias
# gradcheck-exit: 1

import torch
from torch import nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = torch.tanh(self.fc1(x))
        h.data.sign_()  # <- BUG
        return self.fc2(h)


torch.manual_seed(0)
model = Net()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
for step in range(3):
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
