"""Trains an early-exit classifier (BranchyNet-style) that stops at the first confident exit.

Three blocks, each followed by a classifier (``exit1``, ``exit2``, then ``head``). In ``forward``
a batch whose first exit is confident enough (mean max-probability above that exit's threshold)
leaves after the first block, otherwise it goes on to the second exit and, if still not
confident, to the last block; the loss is taken on the exit the batch left at. So in a given step
the deeper blocks may not run, and the exits the batch passed do not reach the loss: each gets
gradients only in the steps that use it. There is no bug: gradcheck reports no problem, only info
lines with how often each skipped part got a gradient in the checked backward calls.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
import torch.nn as nn
import torch.nn.functional as F


def block(d_in, d_out):
    return nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU())


class EarlyExitNet(nn.Module):
    def __init__(self, d_in=10, d=32, classes=3, thresholds=(0.45, 0.365)):
        super().__init__()
        self.thresholds = thresholds  # per exit: the later exits are less sure
        self.block1, self.exit1 = block(d_in, d), nn.Linear(d, classes)
        self.block2, self.exit2 = block(d, d), nn.Linear(d, classes)
        self.block3, self.head = block(d, d), nn.Linear(d, classes)

    def confident(self, logits, exit_index):
        return logits.softmax(dim=-1).max(dim=-1).values.mean() > self.thresholds[exit_index]

    def forward(self, x):
        h = self.block1(x)
        logits = self.exit1(h)
        if self.confident(logits, 0):
            return logits
        h = self.block2(h)
        logits = self.exit2(h)
        if self.confident(logits, 1):
            return logits
        return self.head(self.block3(h))


def main():
    torch.manual_seed(0)
    model = EarlyExitNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(10):
        x = torch.randn(16, 10) * (0.5 + step % 3)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 3 == 0:
            print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
