"""Fine-tunes a small stem/body/head network with SGD and logs every parameter's gradient norm.

Bug: a leftover line from a linear-probing experiment, ``model.body.requires_grad_(False)``,
freezes the body although the whole network (body included) is in the optimizer, so
the ``model.body.*`` parameters never get a gradient and the per-parameter logging
``p.grad.norm()`` crashes with ``AttributeError: 'NoneType' object has no attribute
'norm'``. Fix: delete the freezing line (or, if freezing is intended, build the
optimizer from trainable parameters only and skip ``p.grad is None`` when logging).
"""

# gradcheck-expect: requires_grad_false model.body.0.weight model.body.0.bias model.body.2.weight model.body.2.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, in_dim=16, hidden=32, num_classes=4):
        super().__init__()
        self.stem = nn.Linear(in_dim, hidden)
        self.body = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = torch.relu(self.body(h))
        return self.head(h)


def main():
    torch.manual_seed(0)
    x = torch.randn(96, 16)
    y = torch.randint(0, 4, (96,))

    model = Net()
    model.body.requires_grad_(False)  # <- BUG
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    criterion = nn.CrossEntropyLoss()

    for step in range(5):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        grad_norms = {n: p.grad.norm().item() for n, p in model.named_parameters()}
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f} max grad norm {max(grad_norms.values()):.4f}")


if __name__ == "__main__":
    main()
