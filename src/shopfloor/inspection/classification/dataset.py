"""torch Datasets over in-memory arrays."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class ImageArrayDataset(Dataset):
    """uint8 NxHxWx3 images + integer labels -> (float32 3xHxW in 0..255, int64 label)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i].permute(2, 0, 1).float(), self.labels[i]
