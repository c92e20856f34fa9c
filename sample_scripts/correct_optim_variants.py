"""Trains the same backbone + head network with Adam, AdamW and SGD + momentum.

Each run uses two param groups (a small learning rate for the backbone, a larger one for
the head), a ``StepLR`` scheduler, and gradient accumulation: four ``backward()`` calls
per optimizer step, with ``optimizer.zero_grad()`` right after ``optimizer.step()``.
Every parameter is in exactly one optimizer and receives a gradient before every step.
There is no bug: gradcheck should report nothing.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

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


def make_optimizer(name, model):
    groups = [
        {"params": model.backbone.parameters(), "lr": 1e-3},
        {"params": model.head.parameters(), "lr": 1e-2},
    ]
    if name == "adam":
        return torch.optim.Adam(groups)
    if name == "adamw":
        return torch.optim.AdamW(groups, weight_decay=0.01)
    return torch.optim.SGD(groups, momentum=0.9)


def main():
    torch.manual_seed(0)
    x = torch.randn(256, 16)
    y = torch.randint(0, 4, (256,))
    micro_batches = list(zip(x.split(16), y.split(16), strict=True))
    accum_steps = 4
    criterion = nn.CrossEntropyLoss()

    for name in ("adam", "adamw", "sgd"):
        model = Net()
        optimizer = make_optimizer(name, model)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        optimizer.zero_grad()
        for step in range(4):
            total = 0.0
            for xb, yb in micro_batches[step * accum_steps : (step + 1) * accum_steps]:
                loss = criterion(model(xb), yb) / accum_steps
                loss.backward()
                total += loss.item()
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()
            lrs = ", ".join(f"{lr:.4f}" for lr in scheduler.get_last_lr())
            print(f"{name} step {step}: loss {total:.4f} lr {lrs}")


if __name__ == "__main__":
    main()
