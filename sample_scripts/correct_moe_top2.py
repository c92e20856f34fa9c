"""Trains a tiny language-model block with a top-2 mixture-of-experts feed-forward (Mixtral-style).

Each of the 2 x 3 tokens is sent to the 2 best of 8 experts (an ``nn.ModuleList`` of MLPs built in
``__init__``), weighted by the renormalised router probabilities, and the results are added back
with ``index_add_``. The loop skips an expert that no token chose (``if tokens.numel() == 0``), so
some experts get no gradient in some steps. There is no bug: gradcheck reports no problem, only an
info line with how often each skipped expert ran in the checked backward calls.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
import torch.nn as nn
import torch.nn.functional as F


class SparseMoE(nn.Module):
    def __init__(self, d=16, n_experts=8, top_k=2):
        super().__init__()
        self.top_k = top_k
        self.gate = nn.Linear(d, n_experts, bias=False)
        self.experts = nn.ModuleList(
            [
                nn.Sequential(nn.Linear(d, 2 * d), nn.SiLU(), nn.Linear(2 * d, d))
                for _ in range(n_experts)
            ]
        )

    def forward(self, h):
        batch, seq, d = h.shape
        x = h.reshape(-1, d)
        weights, chosen = self.gate(x).softmax(dim=-1).topk(self.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tokens, slot = torch.where(chosen == e)
            if tokens.numel() == 0:
                continue
            out.index_add_(0, tokens, expert(x[tokens]) * weights[tokens, slot, None])
        return out.reshape(batch, seq, d)


class TinyLM(nn.Module):
    def __init__(self, vocab=32, d=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.norm = nn.LayerNorm(d)
        self.moe = SparseMoE(d)
        self.out = nn.Linear(d, vocab)

    def forward(self, tokens):
        h = self.embed(tokens)
        h = h + self.moe(self.norm(h))
        return self.out(h)


def main():
    torch.manual_seed(0)
    model = TinyLM()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(10):
        tokens = torch.randint(0, 32, (2, 4))
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 32), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 3 == 0:
            print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
