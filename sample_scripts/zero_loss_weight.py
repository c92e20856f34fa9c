"""Trains a classifier with an auxiliary regression head whose loss weight follows a schedule.

Bug: ``aux_weight_at`` keeps the auxiliary weight at ``0.0`` for a 100-step warm-up, but
the run is only 5 steps long, so ``main_loss + aux_weight * aux_loss`` multiplies the
auxiliary loss by zero at every step: ``model.aux_head.weight`` and
``model.aux_head.bias`` get all-zero gradients and never learn, while the trunk and
the main head train normally. Fix: make the warm-up shorter than the run, or ramp the
weight up from a small non-zero value.
"""

# gradcheck-expect: zero_grad_flow model.aux_head.weight model.aux_head.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn
import torch.nn.functional as F

WARMUP_STEPS = 100


class MultiTaskNet(nn.Module):
    def __init__(self, in_dim=16, hidden=32, num_classes=3):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.main_head = nn.Linear(hidden, num_classes)
        self.aux_head = nn.Linear(hidden, 1)

    def forward(self, x):
        h = self.trunk(x)
        return self.main_head(h), self.aux_head(h)


def aux_weight_at(step):
    return 0.0 if step < WARMUP_STEPS else 0.5


def main():
    torch.manual_seed(0)
    x = torch.randn(128, 16)
    y = torch.randint(0, 3, (128,))
    aux_target = x.norm(dim=1, keepdim=True)

    model = MultiTaskNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    for step in range(5):
        optimizer.zero_grad()
        logits, aux_pred = model(x)
        main_loss = F.cross_entropy(logits, y)
        aux_loss = F.mse_loss(aux_pred, aux_target)
        aux_weight = aux_weight_at(step)
        loss = main_loss + aux_weight * aux_loss  # <- BUG
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f} (aux {aux_loss.item():.4f})")


if __name__ == "__main__":
    main()
