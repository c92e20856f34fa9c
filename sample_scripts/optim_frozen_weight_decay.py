"""Fine-tunes a backbone + head with AdamW, then freezes the backbone for the last epochs.

Bug: after two epochs ``model.backbone.requires_grad_(False)`` freezes the backbone, but
the AdamW optimizer (``weight_decay=0.1``) still holds its parameters. Their old ``.grad``
tensors survive the freeze and ``optimizer.zero_grad(set_to_none=False)`` keeps them as
zero tensors, so AdamW does not skip them: the leftover Adam momentum keeps moving the
"frozen" weights for a few epochs and decoupled weight decay then keeps shrinking them
(the printed backbone norm falls although the backbone is frozen). The script prints how
far the backbone moved after the freeze. Fix: rebuild the optimizer from the trainable
parameters after freezing (or set the frozen grads to None, or give the backbone its own
param group with ``weight_decay=0``).

The freeze itself is a schedule (the backbone trained for two epochs first), so it is not a
finding of its own; a freeze of tensors the optimizer holds but never stepped would be a
``requires_grad_false`` error at the freeze line.
"""

# gradcheck-expect: frozen_weight_decay model.backbone.0.weight model.backbone.0.bias model.backbone.2.weight model.backbone.2.bias
# gradcheck-severity: warning
# gradcheck-exit: 0
# gradcheck-args: --steps all
# (the freeze happens after 16 backward calls, past the default check window of 10)

import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, in_dim=16, hidden=32, num_classes=4):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def backbone_norm(model):
    return torch.cat([p.detach().flatten() for p in model.backbone.parameters()]).norm().item()


def main():
    torch.manual_seed(0)
    x = torch.randn(128, 16)
    y = torch.randint(0, 4, (128,))

    model = Net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    criterion = nn.CrossEntropyLoss()

    for epoch in range(6):
        if epoch == 2:
            model.backbone.requires_grad_(False)  # <- BUG
            frozen = [p.detach().clone() for p in model.backbone.parameters()]
        for xb, yb in zip(x.split(16), y.split(16), strict=True):
            optimizer.zero_grad(set_to_none=False)
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: loss {loss.item():.4f} backbone norm {backbone_norm(model):.4f}")

    moved = [(p.detach() - p0).flatten() for p, p0 in zip(model.backbone.parameters(), frozen)]
    print(f"frozen backbone moved by {torch.cat(moved).norm().item():.4f} since freezing")


if __name__ == "__main__":
    main()
