"""Trains a bag-of-embeddings text classifier (embedding table + MLP head) with Adam.

Bug: the loop switches autograd off with the plain call ``torch.set_grad_enabled(False)``
before the embedding lookup and only switches it back on afterwards, so the
embedding table ``model.embed.weight`` never gets a gradient while the head trains.
Fix: delete the two ``set_grad_enabled`` calls around the embedding lookup.
"""

# gradcheck-expect: set_grad_enabled model.embed.weight
# gradcheck-exit: 1

import torch
import torch.nn as nn


class BagOfEmbeddings(nn.Module):
    def __init__(self, vocab_size=100, dim=16, num_classes=4):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.head = nn.Sequential(nn.Linear(dim, 32), nn.ReLU(), nn.Linear(32, num_classes))


def main():
    torch.manual_seed(0)
    tokens = torch.randint(0, 100, (64, 12))
    labels = torch.randint(0, 4, (64,))

    model = BagOfEmbeddings()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    criterion = nn.CrossEntropyLoss()

    for step in range(5):
        optimizer.zero_grad()
        torch.set_grad_enabled(False)  # <- BUG
        pooled = model.embed(tokens).mean(dim=1)
        torch.set_grad_enabled(True)
        logits = model.head(pooled)
        loss = criterion(logits, labels)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
