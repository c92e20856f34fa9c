"""Fits a small two-layer regressor with L-BFGS, whose ``step()`` takes a closure.

L-BFGS calls the closure several times per ``step()`` (forward, loss, backward) from inside its
own ``torch.no_grad()`` update code, and the gradients only exist once the closure has run. There
is no bug: neither the optimizer's internal no_grad work nor "step() before any backward" may be
reported.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
import torch.nn as nn


class Regressor(nn.Module):
    def __init__(self, in_dim=6, hidden=16):
        super().__init__()
        self.encoder = nn.Linear(in_dim, hidden)
        self.head = nn.Linear(hidden, 1)


def main():
    torch.manual_seed(0)
    x = torch.randn(64, 6)
    y = (x[:, :1] * 2.0 - x[:, 1:2]).tanh()

    model = Regressor()
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)

    for step in range(3):

        def closure():
            optimizer.zero_grad()
            features = torch.tanh(model.encoder(x))
            loss = ((model.head(features) - y) ** 2).mean()
            loss.backward()
            return loss

        loss = optimizer.step(closure)
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
