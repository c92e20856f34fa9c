"""Family 9, the compiled model's cause in another file of the user's project: ``Backbone``
(``userlib_f9``) runs its mixing layer under ``torch.set_grad_enabled(False)``, which cuts the
stem too (its output only reaches the loss through that block); the whole
classifier is compiled, and trained with Adam.
"""

# gradcheck-expect: set_grad_enabled model.backbone.stem.weight model.backbone.stem.bias model.backbone.mix.weight model.backbone.mix.bias
# gradcheck-exit: 1

import os

import torch
from torch import nn
from torch._dynamo.utils import counters
from userlib_f9 import Backbone


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = Backbone(6, 12)
        self.fc = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x))


torch.manual_seed(0)
model = Classifier()
step_fn = torch.compile(model, backend=os.environ.get("GC_COMPILE_BACKEND", "inductor"))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x, labels = torch.randn(20, 6), torch.randint(0, 3, (20,))
for step in range(3):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(step_fn(x), labels)
    loss.backward()
    opt.step()
    print(f"step {step} loss {loss.item():.4f}")
print("graphs", dict(counters["stats"]), "breaks", sum(counters["graph_break"].values()))
