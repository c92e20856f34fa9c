# expect: zero_grad_flow (dead ReLU) for model.0.* and model.2.weight, exit 1
import torch
from torch import nn

dev = "cuda"
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1)).to(dev)
with torch.no_grad():
    model[0].bias.fill_(-100.0)  # <- BUG: every hidden unit is dead
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.randn(64, 16, device=dev)
for _step in range(4):
    opt.zero_grad()
    loss = model(x).pow(2).mean()
    loss.backward()
    opt.step()
print("done")
