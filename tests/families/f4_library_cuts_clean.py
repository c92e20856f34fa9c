"""Family 4: a correct loop full of library-internal cuts — nn.init in the constructor, an EMA
kept by torch.optim.swa_utils.AveragedModel, clip_grad_norm_, state_dict()/load_state_dict()
for a checkpoint copy. Nothing here is the user's cut: the report is clean."""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 16), nn.Linear(16, 2)
        nn.init.kaiming_normal_(self.fc1.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


torch.manual_seed(0)
model = Net()
ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.99))
best = Net()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
x, y = torch.randn(32, 6), torch.randint(0, 2, (32,))
for step in range(4):
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    ema.update_parameters(model)
    best.load_state_dict(model.state_dict())
    print(f"step {step} loss {loss.item():.4f}")
