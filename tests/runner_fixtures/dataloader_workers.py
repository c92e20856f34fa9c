"""A DataLoader with two worker processes, guarded by ``if __name__ == "__main__"``."""

import torch
from torch.utils.data import DataLoader, Dataset


class Squares(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([float(index * index)])


def main() -> None:
    loader = DataLoader(Squares(), batch_size=2, num_workers=2)
    for batch in loader:
        print(batch.flatten().tolist())
    print("done")


if __name__ == "__main__":
    main()
