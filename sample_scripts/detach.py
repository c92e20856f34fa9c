"""Trains a small autoencoder on synthetic data for a few steps with Adam.

Bug: ``forward`` calls ``.detach()`` on the encoder output, so the reconstruction
loss only reaches the decoder and every ``model.encoder.*`` parameter keeps
``grad is None`` (the encoder never learns, but nothing crashes). Fix: remove the
``.detach()`` so gradients flow back into the encoder.
"""

# gradcheck-expect: detach model.encoder.0.weight model.encoder.0.bias model.encoder.2.weight model.encoder.2.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class AutoEncoder(nn.Module):
    def __init__(self, in_dim=20, hidden=16, code=4):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, code))
        self.decoder = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, in_dim))

    def forward(self, x):
        h = self.encoder(x).detach()  # <- BUG
        return self.decoder(h)


def main():
    torch.manual_seed(0)
    data = torch.randn(64, 20)

    model = AutoEncoder()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    criterion = nn.MSELoss()

    for step in range(5):
        optimizer.zero_grad()
        recon = model(data)
        loss = criterion(recon, data)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
