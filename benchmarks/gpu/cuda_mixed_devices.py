# expect: clean, exit 0 (a CPU embedding table feeding a CUDA model: gradients on two devices)
import torch
from torch import nn

torch.manual_seed(0)
table = nn.Embedding(50, 8)  # stays on the CPU
net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1)).to("cuda")
opt = torch.optim.SGD([*table.parameters(), *net.parameters()], lr=0.1)
for _step in range(4):
    idx = torch.randint(0, 50, (32,))
    opt.zero_grad()
    loss = net(table(idx).to("cuda")).pow(2).mean()
    loss.backward()
    opt.step()
print("done")
