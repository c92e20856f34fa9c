"""Trains a two-layer Tanh MLP classifier with SGD and "prunes" the output layer after each step.

Bug: the pruning keeps only weights above a threshold, ``model.fc2.weight.data.mul_(keep)``,
but the threshold is larger than every weight, so the mask is all zero and the output layer is
reset to zero after every update. With ``fc2.weight`` all zero, no gradient reaches the hidden
layer: ``model.fc1.weight`` and ``model.fc1.bias`` get all-zero gradients at every step (the
``.data`` write also bypasses autograd, so nothing warns). A layer zero-initialised once is
fine — it moves at its first update and the layers before it learn from then on; this one is
zeroed again after each update. Fix: compare against a threshold on the weights' scale
(e.g. a quantile of ``|w|``), or prune with ``torch.nn.utils.prune``.
"""

# gradcheck-expect: data_attr model.fc1.weight model.fc1.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class MLP(nn.Module):
    def __init__(self, in_dim=16, hidden=32, num_classes=4):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.act = nn.Tanh()
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def main():
    torch.manual_seed(0)
    x = torch.randn(128, 16)
    y = torch.randint(0, 4, (128,))

    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()

    for step in range(5):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        keep = (model.fc2.weight.abs() > 1.0).float()  # threshold above every weight
        model.fc2.weight.data.mul_(keep)  # <- BUG
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
