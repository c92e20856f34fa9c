"""A token-classification head written by the user on BertModel (random weights, tiny config).
The pooler is unused by design (a library part: a warning, not an error). Bug (--bug): the
encoder output is computed under torch.no_grad(), so BERT never learns."""

import sys

import torch
from torch import nn
from transformers import BertConfig, BertModel

BUG = "--bug" in sys.argv


class Tagger(nn.Module):
    def __init__(self, num_tags: int = 5) -> None:
        super().__init__()
        config = BertConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=32,
        )
        self.bert = BertModel(config)
        self.head = nn.Linear(32, num_tags)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if BUG:
            with torch.no_grad():  # BUG
                h = self.bert(input_ids=ids).last_hidden_state
        else:
            h = self.bert(input_ids=ids).last_hidden_state
        return self.head(h)


torch.manual_seed(0)
model = Tagger()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
for step in range(3):
    ids = torch.randint(0, 100, (4, 12))
    tags = torch.randint(0, 5, (4, 12))
    logits = model(ids)
    loss = nn.functional.cross_entropy(logits.reshape(-1, 5), tags.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"step {step}: loss {loss.item():.3f}")
