"""The training loop: tensor batches straight from the uint8 cache, early stopping, resumable state.

Data path: the cache's uint8 images stay memory-mapped; each epoch draws a
permutation of the training indices, gathers a uint8 batch, moves it to the
device and only there converts, normalises and augments it (see
:mod:`convbench.training.augment`). The last incomplete training batch of an
epoch is dropped, so every step sees ``batch_size`` images (BatchNorm statistics
stay stable and the step count is the same every epoch); a training set smaller
than one batch is used whole.

Randomness: model initialisation and dropout use torch's global generator
(saved in :meth:`Trainer.state_dict`); the permutation and the augmentation of
epoch ``e`` use a CPU generator seeded from ``(train.seed, e)``, so a run
resumed at an epoch boundary replays exactly what an uninterrupted run does.

Multi-process (see :mod:`convbench.training.distributed`): every rank draws
the same permutation and augmentation numbers, trains on its slice of each
global batch through DistributedDataParallel (gradients averaged, so a step is
the single-process step over the global batch), evaluates a slice of the
validation set, and sums its counts with the other ranks, so every rank takes
the same early-stopping decisions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from convbench.config import ConfigError
from convbench.data.format import Cache
from convbench.errors import ConvbenchError
from convbench.params import TrainParams
from convbench.training.augment import Normalizer, alternating_flips, augment_batch, flip_coins
from convbench.training.device import Runtime
from convbench.training.distributed import Dist, shard_batches
from convbench.training.optim import build_optimizer, build_scheduler

HISTORY_COLUMNS: tuple[str, ...] = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "seconds",
    "images_per_second",
)
"""Per-epoch history: ``seconds`` is the whole epoch (training and validation);
``images_per_second`` counts training images over the training phase only."""


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator for epoch ``epoch``'s permutation and augmentation."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A real copy of the weights: ``state_dict()`` alone returns live references that keep training."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass(frozen=True)
class FitResult:
    """What :meth:`Trainer.fit` reports; the model holds the best epoch's weights."""

    best_epoch: int
    best_val_loss: float
    best_val_accuracy: float
    epochs_run: int
    stopped_early: bool
    train_seconds: float
    train_images_per_second: float
    history: dict[str, list[float]]


class Trainer:
    """SGD training of one model on a :class:`~convbench.data.format.Cache` split, with early stopping.

    Validation loss uses the same label-smoothed cross-entropy as training, so
    the two curves measure the same thing and the gap shows over-fitting. With
    ``train.ema_decay`` the weights validated, kept as best and saved are an
    exponential moving average of the trained ones, updated after every step
    (BatchNorm statistics averaged too).
    """

    def __init__(
        self,
        model: nn.Module,
        cache: Cache,
        split: dict[str, torch.Tensor],
        params: TrainParams,
        runtime: Runtime,
        *,
        progress: str = "train",
        dist: Dist = Dist(),
    ) -> None:
        size = cache.image_size
        if params.crop_padding >= size:
            raise ConfigError(f"train.crop_padding: must be smaller than the {size}px images, got {params.crop_padding}")
        if params.cutout > size:
            raise ConfigError(f"train.cutout: must not exceed the {size}px images, got {params.cutout}")
        if len(split["train"]) == 0 or len(split["val"]) == 0:
            raise ConvbenchError("the split has no training or no validation images; raise data.val_fraction")
        self.params = params
        self.runtime = runtime
        self.dist = dist
        self.progress = progress
        self.device = runtime.device
        self.images = cache.images
        self.labels = cache.labels
        self.train_index = split["train"]
        self.val_index = split["val"]
        self.normalizer = Normalizer(cache.mean, cache.std, self.device)
        self.batch_size = min(params.batch_size, len(self.train_index))
        self.steps_per_epoch = len(self.train_index) // self.batch_size
        if dist.enabled and params.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device, memory_format=runtime.memory_format)
        self.net: nn.Module = self.model
        """What the training step calls: the model, or its DistributedDataParallel wrapper."""
        if dist.enabled:
            ids = [self.device] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(params.ema_decay), use_buffers=True)
                    if params.ema_decay > 0 else None)
        self.coins = flip_coins(len(self.images), params.seed) if params.alternating_flip else None
        """First-epoch flip of every cache image under ``train.alternating_flip``."""
        self.optimizer = build_optimizer(self.model, params)
        self.scheduler = build_scheduler(self.optimizer, params, self.steps_per_epoch)
        self.scaler = runtime.grad_scaler()
        self.epoch = 0
        self.history: dict[str, list[float]] = {name: [] for name in HISTORY_COLUMNS}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_val_loss = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0

    @property
    def validated(self) -> nn.Module:
        """The weights that are validated, kept as best and saved: the moving average if there is one."""
        return self.model if self.ema is None else self.ema.module

    # -- batches -------------------------------------------------------------------------------

    def _batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather uint8 images and labels on the host and move them to the device."""
        x, y = self.images[index], self.labels[index]
        if self.device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
        return F.cross_entropy(
            logits.float(), y, label_smoothing=self.params.label_smoothing, reduction=reduction
        )

    # -- one epoch -----------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training split; returns loss, accuracy, last lr, seconds, images/s."""
        p = self.params
        generator = epoch_generator(p.seed, epoch)
        order = self.train_index[torch.randperm(len(self.train_index), generator=generator)]
        batches = shard_batches(order, self.batch_size, self.dist)
        part = (self.dist.rank * batches.shape[1], self.batch_size)
        self.net.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        lr = self.optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        bar = tqdm(
            total=self.steps_per_epoch * self.batch_size,
            desc=f"{self.progress} {epoch}/{p.epochs}",
            unit="img",
            unit_scale=True,
            leave=False,
            disable=None if self.dist.is_main else True,
        )
        with bar:
            for step, index in enumerate(batches):
                x, y = self._batch(index)
                flips = None if self.coins is None else alternating_flips(self.coins, index, epoch)
                x = augment_batch(
                    x, self.normalizer, generator,
                    crop_padding=p.crop_padding, flip=p.flip, cutout_size=p.cutout, part=part, flip_mask=flips,
                ).contiguous(memory_format=self.runtime.memory_format)
                with self.runtime.autocast():
                    logits = self.net(x)
                loss = self._loss(logits, y, "mean")
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                lr = self.optimizer.param_groups[0]["lr"]
                self.scheduler.step()
                loss_sum += loss.detach() * len(y)
                correct += (logits.argmax(1) == y).sum()
                seen += len(y)
                bar.update(self.batch_size)
                if not bar.disable and (step % 10 == 9 or step == self.steps_per_epoch - 1):
                    bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}")
        seconds = time.perf_counter() - start
        loss_sum, correct = self.dist.all_sum(loss_sum, correct)
        seen = self.steps_per_epoch * self.batch_size
        return {
            "train_loss": loss_sum.item() / seen,
            "train_accuracy": correct.item() / seen,
            "lr": lr,
            "train_seconds": seconds,
            "images_per_second": seen / seconds,
        }

    @torch.inference_mode()
    def evaluate(self, index: torch.Tensor) -> tuple[float, float]:
        """Mean loss and accuracy over ``index`` in eval mode, ``eval_batch_size`` at a time.

        Ranks evaluate every ``world_size``-th image of ``index`` with rank 0's
        BatchNorm statistics and add up their sums.
        """
        model = self.validated.eval()
        self.dist.sync_buffers(model)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for chunk in index[self.dist.rank :: self.dist.world_size].split(self.params.eval_batch_size):
            x, y = self._batch(chunk)
            x = self.normalizer(x).contiguous(memory_format=self.runtime.memory_format)
            with self.runtime.autocast():
                logits = model(x)
            loss_sum += self._loss(logits, y, "sum")
            correct += (logits.argmax(1) == y).sum()
        loss_sum, correct = self.dist.all_sum(loss_sum, correct)
        return loss_sum.item() / len(index), correct.item() / len(index)

    # -- the whole run -------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.epoch >= self.params.epochs or self.bad_epochs >= self.params.patience

    def fit(self, on_epoch: Callable[[dict[str, float]], None] | None = None) -> FitResult:
        """Train until ``train.epochs`` or ``train.patience`` epochs without a better validation loss.

        ``on_epoch(row)`` runs after each epoch's bookkeeping (row = one history
        line), when :meth:`state_dict` is ready to checkpoint. At the end the
        model holds the best epoch's weights.
        """
        while not self.finished:
            epoch = self.epoch + 1
            start = time.perf_counter()
            train = self.train_epoch(epoch)
            if not math.isfinite(train["train_loss"]):
                raise ConvbenchError(f"training diverged at epoch {epoch} (loss {train['train_loss']}); lower train.lr")
            val_loss, val_accuracy = self.evaluate(self.val_index)
            row = {
                "epoch": epoch,
                "train_loss": train["train_loss"],
                "train_accuracy": train["train_accuracy"],
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "lr": train["lr"],
                "seconds": time.perf_counter() - start,
                "images_per_second": train["images_per_second"],
            }
            for name in HISTORY_COLUMNS:
                self.history[name].append(row[name])
            self.epoch = epoch
            if val_loss < self.best_val_loss:
                self.best_val_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
                self.best_state = snapshot(self.validated)
            else:
                self.bad_epochs += 1
            if on_epoch is not None:
                on_epoch(row)
        return self.result()

    def result(self) -> FitResult:
        """Load the best weights into the model and summarise the run."""
        if self.best_state is None:
            raise ConvbenchError("no epoch had a finite validation loss; lower train.lr")
        self.model.load_state_dict(self.best_state)
        h = self.history
        train_seconds = sum(h["seconds"])
        train_phase = sum(self.steps_per_epoch * self.batch_size / ips for ips in h["images_per_second"])
        return FitResult(
            best_epoch=self.best_epoch,
            best_val_loss=self.best_val_loss,
            best_val_accuracy=h["val_accuracy"][self.best_epoch - 1],
            epochs_run=self.epoch,
            stopped_early=self.epoch < self.params.epochs,
            train_seconds=train_seconds,
            train_images_per_second=self.epoch * self.steps_per_epoch * self.batch_size / train_phase,
            history={k: list(v) for k, v in h.items()},
        )

    # -- checkpointing -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and plain containers (``weights_only`` loadable).

        The random generators are gathered from every rank (one entry per rank),
        so dropout resumes exactly in multi-process runs too. Collective: every
        rank must call it.
        """
        cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else torch.empty(0)
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "rng": {
                "torch": self.dist.all_gather(torch.get_rng_state()),
                "cuda": self.dist.all_gather(cuda_rng),
            },
            "history": self.history,
            "best_state": self.best_state,
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` of a run with the same params and data."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["rng"]["torch"][self.dist.rank])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"][self.dist.rank], self.device)
        self.epoch = state["epoch"]
        self.history = {name: list(state["history"][name]) for name in HISTORY_COLUMNS}
        self.best_state = (
            None
            if state["best_state"] is None
            else {k: v.to(self.device) for k, v in state["best_state"].items()}
        )
        self.best_val_loss = state["best_val_loss"]
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = state["bad_epochs"]
