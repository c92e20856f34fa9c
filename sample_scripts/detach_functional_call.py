"""Trains an encoder and a classification head; the head runs through
``torch.func.functional_call`` with a parameter dict (shared with a per-sample-gradient helper).

Bug: the dict is built from ``.detach()``-ed parameters (fine inside ``vmap(grad(...))``, where
the helper came from), so ``loss.backward()`` reaches the encoder but none of the head's
parameters: they keep ``grad is None`` and never learn, while the loss still goes down a little.
Fix: use ``dict(model.head.named_parameters())``.
"""

# gradcheck-expect: detach model.head.0.weight model.head.0.bias model.head.2.weight model.head.2.bias
# gradcheck-exit: 1

import torch
from torch import nn
from torch.func import functional_call


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(8, 32), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3))


def main():
    torch.manual_seed(0)
    model = Classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))

    for step in range(4):
        head_params = {k: v.detach() for k, v in model.head.named_parameters()}  # <- BUG
        logits = functional_call(model.head, head_params, (model.encoder(x),))
        loss = nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
