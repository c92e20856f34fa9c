"""Trains an MLP classifier with SGD + momentum, gradient clipping and an evaluation pass.

Every parameter is used in ``forward`` and receives a gradient each step;
``clip_grad_norm_`` rescales gradients in place and the validation pass runs under
``torch.no_grad()`` as it should. There is no bug: gradcheck should report nothing.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
import torch.nn as nn


class MLP(nn.Module):
    def __init__(self, in_dim=20, hidden=64, num_classes=5):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.net(x)


def main():
    torch.manual_seed(0)
    x_train, y_train = torch.randn(256, 20), torch.randint(0, 5, (256,))
    x_val, y_val = torch.randn(64, 20), torch.randint(0, 5, (64,))

    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    criterion = nn.CrossEntropyLoss()

    for step in range(8):
        model.train()
        optimizer.zero_grad()
        loss = criterion(model(x_train), y_train)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f} grad norm {grad_norm.item():.4f}")

    model.eval()
    with torch.no_grad():
        logits = model(x_val)
        val_loss = criterion(logits, y_val)
        acc = (logits.argmax(dim=1) == y_val).float().mean()
    print(f"val loss {val_loss.item():.4f} acc {acc.item():.3f}")


if __name__ == "__main__":
    main()
