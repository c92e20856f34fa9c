"""Family 8: the vocabulary grows after the optimizer was built; the new embedding is made from
the old weights with .detach() and torch.cat. The one finding is the stale optimizer."""

# gradcheck-expect: stale_optimizer model.emb.weight
# gradcheck-exit: 1

import torch
from torch import nn
import torch.nn.functional as F


class LM(nn.Module):
    def __init__(self, vocab=20, d=8):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.out = nn.Linear(d, vocab + 4)

    def forward(self, ids):
        return self.out(self.emb(ids))


torch.manual_seed(0)
model = LM()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
extra = torch.randn(4, 8) * 0.02
model.emb = nn.Embedding.from_pretrained(  # <- BUG
    torch.cat([model.emb.weight.detach(), extra]), freeze=False
)
ids = torch.randint(0, 24, (4, 6))
for step in range(3):
    opt.zero_grad()
    F.cross_entropy(model(ids).flatten(0, 1), ids.flatten()).backward()
    opt.step()
