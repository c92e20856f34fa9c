"""Hogwild training as in pytorch/examples/mnist_hogwild: the model's memory is shared and two
worker processes train it at once, each with its own optimizer. Bug (--bug): the workers run
the forward pass under torch.no_grad()."""

import sys

import torch
import torch.multiprocessing as mp
from torch import nn

BUG = "--bug" in sys.argv


def train(rank: int, model: nn.Module) -> None:
    torch.manual_seed(rank)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(3):
        x = torch.randn(16, 10)
        y = torch.randint(0, 2, (16,))
        if BUG:
            with torch.no_grad():  # BUG
                out = model(x)
            out.requires_grad_()
        else:
            out = model(x)
        loss = nn.functional.cross_entropy(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 2))
    model.share_memory()
    workers = [mp.Process(target=train, args=(rank, model)) for rank in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print("done")
