"""The course notebook's way of loading images and training, reproduced as the benchmark's reference.

Everything here is what the notebook does, kept deliberately: float32 images from ``ImageFolder`` + ``Resize`` +
``ToTensor`` read one at a time and stacked, one-hot labels in a ``TensorDataset``, a shuffling ``DataLoader``,
``labels.argmax(dim=1)`` and ``.item()`` in every batch, fp32, NCHW, no augmentation. Only the optimizer and the
loss's label smoothing are ours (the same objects our step uses), so a timing difference comes from the data path,
precision and memory layout, not from the recipe.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision import datasets, transforms

from convbench.params import TrainParams
from convbench.training.optim import build_optimizer


def notebook_image_dataset(root: Path, image_size: int) -> TensorDataset:
    """The notebook's ``ImageFolder`` read plus its ``create_one_hot_dataset``, line for line (less its first full
    pass over the ``ImageFolder`` for class statistics, which flatters the notebook)."""
    transform = transforms.Compose([transforms.Resize((image_size, image_size)), transforms.ToTensor()])
    dataset = datasets.ImageFolder(root=str(root), transform=transform)
    num_classes = len(dataset.classes)
    images = []
    one_hot_labels = []
    for img, label in dataset:
        images.append(img)
        label_long = torch.tensor(label, dtype=torch.long)
        one_hot = F.one_hot(label_long, num_classes=num_classes)
        one_hot_labels.append(one_hot)
    images_tensor = torch.stack(images)
    labels_tensor = torch.stack(one_hot_labels)
    return TensorDataset(images_tensor, labels_tensor)


class NotebookLoop:
    """The notebook's ``train_one_epoch`` over a ``TensorDataset`` of float images and one-hot labels: uint8 ``images``
    (N, 3, H, W) become what ``ToTensor`` yields (float32 in 0..1, NCHW), ``labels`` one-hot rows as ``F.one_hot``
    makes them."""

    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                 params: TrainParams, device: torch.device) -> None:
        dataset = TensorDataset(images.float().div(255), F.one_hot(labels, num_classes))
        self.loader = DataLoader(dataset, batch_size=params.batch_size, shuffle=True, num_workers=0)
        self.model = model.to(device)
        self.optimizer = build_optimizer(self.model, params)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=params.label_smoothing)
        self.device = device

    def train_epoch(self) -> dict[str, float]:
        """The notebook's loop body, unchanged; returns mean loss and accuracy."""
        model, device = self.model, self.device
        model.train()
        running_loss = 0.0
        correct = 0
        total = 0
        for images, labels in self.loader:
            images, labels = images.to(device), labels.to(device)
            labels = labels.argmax(dim=1).long()
            self.optimizer.zero_grad()
            outputs = model(images)
            loss = self.criterion(outputs, labels)
            loss.backward()
            self.optimizer.step()
            running_loss += loss.item() * images.size(0)
            _, predicted = torch.max(outputs, 1)
            correct += (predicted == labels).sum().item()
            total += labels.size(0)
        return {"train_loss": running_loss / total, "train_accuracy": correct / total}
