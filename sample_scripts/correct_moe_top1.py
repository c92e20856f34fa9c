"""Trains a tiny token classifier with a sparse mixture-of-experts layer (top-1, Switch-style).

A router scores 8 expert MLPs (an ``nn.ModuleList`` built in ``__init__``) for each of the 16
tokens of a batch; every token goes to its best expert only, scaled by the router's probability,
and a load-balancing auxiliary loss keeps the router spreading tokens. An expert that no token
chose in a step does not run and gets no gradient that step: that is how sparse routing works.
There is no bug: gradcheck reports no problem, only an info line with how often each skipped
expert ran in the checked backward calls.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
import torch.nn as nn
import torch.nn.functional as F


class Expert(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.up = nn.Linear(d, hidden)
        self.down = nn.Linear(hidden, d)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


class SwitchMoE(nn.Module):
    def __init__(self, d=16, n_experts=8, hidden=32):
        super().__init__()
        self.router = nn.Linear(d, n_experts)
        self.experts = nn.ModuleList([Expert(d, hidden) for _ in range(n_experts)])

    def forward(self, x):
        probs = self.router(x).softmax(dim=-1)  # [tokens, experts]
        gate, choice = probs.max(dim=-1)
        out = torch.zeros_like(x)
        for i, expert in enumerate(self.experts):
            routed = choice == i
            if routed.any():  # an expert with no token is skipped this step
                out[routed] = expert(x[routed]) * gate[routed, None]
        # Switch Transformer load balancing: fraction of tokens times mean probability.
        share = F.one_hot(choice, len(self.experts)).float().mean(dim=0)
        aux = len(self.experts) * (share * probs.mean(dim=0)).sum()
        return out, aux


class Classifier(nn.Module):
    def __init__(self, d=16, classes=4):
        super().__init__()
        self.embed = nn.Linear(8, d)
        self.moe = SwitchMoE(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        h = self.embed(x)
        moe_out, aux = self.moe(h)
        return self.head(h + moe_out), aux


def main():
    torch.manual_seed(0)
    model = Classifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(10):
        x = torch.randn(16, 8)
        y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
        logits, aux = model(x)
        loss = F.cross_entropy(logits, y) + 0.01 * aux
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 3 == 0:
            print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
