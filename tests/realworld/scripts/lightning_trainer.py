"""A Lightning Trainer run (3 training steps, validation, gradient clipping). Bug (--bug): the
training_step detaches the features before the classifier head."""

import sys

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

BUG = "--bug" in sys.argv


class LitClassifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def training_step(self, batch, batch_idx):
        x, y = batch
        h = self.features(x)
        if BUG:
            h = h.detach()  # BUG
        return nn.functional.cross_entropy(self.head(h), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.head(self.features(x)), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


torch.manual_seed(0)
data = TensorDataset(torch.randn(48, 8), torch.randint(0, 3, (48,)))
trainer = pl.Trainer(
    max_steps=3,
    limit_val_batches=1,
    val_check_interval=3,
    gradient_clip_val=1.0,
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    accelerator="cpu",
    devices=1,
)
trainer.fit(LitClassifier(), DataLoader(data, batch_size=16), DataLoader(data, batch_size=16))
print("done")
