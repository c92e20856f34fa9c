# expect: detach at the BUG line, exit 1
import torch
from torch import nn

dev = "cuda"
torch.manual_seed(0)
enc = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16)).to(dev)
head = nn.Linear(16, 4).to(dev)
opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=1e-3)
x, y = torch.randn(128, 32, device=dev), torch.randint(0, 4, (128,), device=dev)
for _step in range(5):
    opt.zero_grad()
    h = enc(x).detach()  # <- BUG
    loss = nn.functional.cross_entropy(head(h), y)
    loss.backward()
    opt.step()
print("done", float(loss))
