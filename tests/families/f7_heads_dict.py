"""Family 7, the model in another file of the user's project: ``userlib_f7.MultiTask`` keeps its
task heads in a plain dict instead of ``nn.ModuleDict``, so the optimizer never sees them.

Fix: ``self.heads = nn.ModuleDict({...})``.
"""

# gradcheck-expect: unregistered_parameter model.heads['age'].weight model.heads['age'].bias model.heads['kind'].weight model.heads['kind'].bias
# gradcheck-exit: 1

import torch
import torch.nn.functional as F
from userlib_f7 import MultiTask

torch.manual_seed(0)
model = MultiTask(10, {"age": 1, "kind": 4})
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
x, age, kind = torch.randn(40, 10), torch.randn(40, 1), torch.randint(0, 4, (40,))
for step in range(3):
    opt.zero_grad()
    out = model(x)
    loss = F.mse_loss(out["age"], age) + F.cross_entropy(out["kind"], kind)
    loss.backward()
    opt.step()
    print(f"step {step} loss {loss.item():.4f}")
