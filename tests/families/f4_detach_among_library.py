"""Family 4: the same library-internal cuts around one real bug, a .detach() in the user's
forward: the finding is the user's detach, never a line inside torch."""

# gradcheck-expect: detach model.fc1.weight model.fc1.bias
# gradcheck-exit: 1

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 16), nn.Linear(16, 2)
        nn.init.xavier_uniform_(self.fc1.weight)

    def forward(self, x):
        h = torch.relu(self.fc1(x)).detach()  # <- BUG
        return self.fc2(h)


torch.manual_seed(0)
model = Net()
ema = AveragedModel(model)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(32, 6), torch.randint(0, 2, (32,))
for step in range(3):
    ema.load_state_dict(ema.state_dict())
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    ema.update_parameters(model)
