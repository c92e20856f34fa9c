"""Trains an LSTM to predict the next value of a noisy sine wave with truncated BPTT.

The long sequence is processed in chunks of 20 steps; the LSTM state is carried
across chunks but detached between them, which is the correct way to truncate
backpropagation through time (each chunk gets its own backward and optimizer step).
There is no bug: gradcheck should report nothing.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
import torch.nn as nn


class SeqModel(nn.Module):
    def __init__(self, hidden=24):
        super().__init__()
        self.lstm = nn.LSTM(input_size=1, hidden_size=hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x, state=None):
        out, state = self.lstm(x, state)
        return self.head(out), state


def main():
    torch.manual_seed(0)
    batch_size, total_len, chunk = 8, 100, 20
    t = torch.linspace(0, 8 * torch.pi, total_len + 1)
    phase = torch.rand(batch_size, 1) * 2 * torch.pi
    series = (torch.sin(t + phase) + 0.05 * torch.randn(batch_size, total_len + 1)).unsqueeze(-1)

    model = SeqModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    criterion = nn.MSELoss()

    for epoch in range(2):
        state = None
        total = 0.0
        for start in range(0, total_len, chunk):
            x = series[:, start : start + chunk]
            y = series[:, start + 1 : start + chunk + 1]
            if state is not None:
                state = tuple(s.detach() for s in state)
            pred, state = model(x, state)
            loss = criterion(pred, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(f"epoch {epoch}: mean chunk loss {total / (total_len // chunk):.4f}")


if __name__ == "__main__":
    main()
