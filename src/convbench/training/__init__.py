"""Training: the resumable loop, batched augmentation, device/precision choice, and the trained-model file.

``train_family`` (in :mod:`.run`) is the train stage; :func:`load_trained`
rebuilds a trained model for evaluation and prediction.
"""

from convbench.training.weights import load_trained

__all__ = ["load_trained"]
