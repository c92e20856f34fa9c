"""Trains a small transformer encoder with LayerDrop (structured dropout of whole layers).

The model keeps 4 ``nn.TransformerEncoderLayer`` blocks in an ``nn.ModuleList`` built in its
``__init__``; in training mode each block is skipped with probability 0.3 (Fan et al., "Reducing
Transformer Depth on Demand with Structured Dropout"), so a skipped block runs nowhere in that
step and gets no gradient. Evaluation runs every block under ``torch.no_grad()``. There is no
bug: gradcheck reports no problem, only an info line with how often each skipped block ran in
the checked backward calls.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerDropEncoder(nn.Module):
    def __init__(self, vocab=32, d=32, layers=4, layerdrop=0.3, classes=2):
        super().__init__()
        self.layerdrop = layerdrop
        self.embed = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(
            [
                nn.TransformerEncoderLayer(
                    d, 4, dim_feedforward=2 * d, dropout=0.0, batch_first=True
                )
                for _ in range(layers)
            ]
        )
        self.head = nn.Linear(d, classes)

    def forward(self, tokens):
        h = self.embed(tokens)
        for layer in self.layers:
            if self.training and torch.rand(()) < self.layerdrop:
                continue  # LayerDrop: skip the whole layer this step
            h = layer(h)
        return self.head(h.mean(dim=1))


def main():
    torch.manual_seed(0)
    model = LayerDropEncoder()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(10):
        model.train()
        tokens = torch.randint(0, 32, (8, 6))
        labels = (tokens[:, 0] < 16).long()
        loss = F.cross_entropy(model(tokens), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 3 == 0:
            model.eval()
            with torch.no_grad():
                accuracy = (model(tokens).argmax(-1) == labels).float().mean()
            print(f"step {step}: loss {loss.item():.4f}, train accuracy {accuracy.item():.2f}")


if __name__ == "__main__":
    main()
