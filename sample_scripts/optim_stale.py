"""Pre-trains a small classifier on 10 classes, then adapts it to a 5-class task.

Bug: after the first phase the last layer is replaced with ``model.fc = nn.Linear(32, 5)``
but training continues with the optimizer built at the start. That optimizer still holds
the old ``fc`` tensors (and their momentum buffers); the new ``model.fc.weight`` and
``model.fc.bias`` get gradients every step but are in no optimizer, so the new head
never learns and only the features move. Nothing crashes. Fix: rebuild the optimizer
(and any scheduler) after replacing the layer, or replace the layer before building it.
"""

# gradcheck-expect: stale_optimizer model.fc.weight model.fc.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, in_dim=16, hidden=32, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


def main():
    torch.manual_seed(0)
    x_pre, y_pre = torch.randn(128, 16), torch.randint(0, 10, (128,))
    x_new, y_new = torch.randn(64, 16), torch.randint(0, 5, (64,))

    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    criterion = nn.CrossEntropyLoss()

    for step in range(4):
        optimizer.zero_grad()
        loss = criterion(model(x_pre), y_pre)
        loss.backward()
        optimizer.step()
        print(f"pretrain step {step}: loss {loss.item():.4f}")

    # Adapt to the 5-class downstream task.
    model.fc = nn.Linear(32, 5)  # <- BUG

    for step in range(4):
        optimizer.zero_grad()
        loss = criterion(model(x_new), y_new)
        loss.backward()
        optimizer.step()
        print(f"finetune step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
