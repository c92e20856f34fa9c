"""Fine-tunes only the head of a network whose "pretrained" backbone is deliberately frozen.

The backbone is frozen on purpose with ``requires_grad_(False)``, the optimizer is
built from the trainable parameters only, and the per-parameter gradient-norm log
skips parameters whose ``grad`` is None. This is the correct way to do linear
probing: gradcheck should report nothing.
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


def main():
    torch.manual_seed(0)
    x = torch.randn(96, 16)
    y = torch.randint(0, 4, (96,))

    model = Net()
    # Pretend the backbone was loaded from a checkpoint; train only the head (linear probe).
    model.backbone.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    criterion = nn.CrossEntropyLoss()

    for step in range(5):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        grad_norms = {
            n: p.grad.norm().item() for n, p in model.named_parameters() if p.grad is not None
        }
        optimizer.step()
        norms = ", ".join(f"{n}={v:.3f}" for n, v in grad_norms.items())
        print(f"step {step}: loss {loss.item():.4f} grad norms: {norms}")


if __name__ == "__main__":
    main()
