"""Trains a tiny sequence classifier whose mixture-of-experts layer routes whole sequences.

Each sequence of 6 tokens starts with the same ``BOS`` token. A router scores 4 expert MLPs (an
``nn.ModuleList`` built in ``__init__``) and each sequence goes to one expert, weighted by the
router's probability.

Bug: the sequence is routed by the router's scores for its *first* token, ``probs[b, 0]`` — the
``BOS`` token, identical in every sequence — so every sequence of every batch goes to the same
expert (expert collapse) and the other three never train. Nothing crashes. gradcheck waits until
the end of its check window (10 backward calls) and then warns that ``model.moe.experts.0``, ``.1``
and ``.3`` never ran in any of them while ``model.moe.experts.2`` did, pointing at the line where
the experts are called (and at the line that built the list). Fix: route by the whole sequence,
``probs[b].mean(dim=0)``.
"""

# gradcheck-expect: unused_parameter
# gradcheck-severity: warning
# gradcheck-exit: 0

import torch
import torch.nn as nn
import torch.nn.functional as F

BOS = 0


class SequenceMoE(nn.Module):
    def __init__(self, d=16, n_experts=4):
        super().__init__()
        self.router = nn.Linear(d, n_experts)
        self.experts = nn.ModuleList(
            [
                nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))
                for _ in range(n_experts)
            ]
        )

    def forward(self, h):  # h: [batch, seq, d]
        probs = self.router(h).softmax(dim=-1)  # [batch, seq, experts]
        outs = []
        for b in range(h.shape[0]):
            e = int(probs[b, 0].argmax())
            outs.append(self.experts[e](h[b]) * probs[b, 0, e])  # <- BUG
        return torch.stack(outs)


class Classifier(nn.Module):
    def __init__(self, vocab=20, d=16, classes=3):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.moe = SequenceMoE(d)
        self.head = nn.Linear(d, classes)

    def forward(self, tokens):
        h = self.embed(tokens)
        h = h + self.moe(h)
        return self.head(h.mean(dim=1))


def main():
    torch.manual_seed(0)
    model = Classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(12):
        body = torch.randint(1, 20, (8, 5))
        tokens = torch.cat([torch.full((8, 1), BOS), body], dim=1)
        labels = body[:, 0] % 3
        loss = F.cross_entropy(model(tokens), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 4 == 0:
            print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
