"""Training: the resumable loop, batched augmentation and device/precision choice.

``train_family`` (in :mod:`.run`) is the train stage; it writes the trained-model file of
:mod:`convbench.models.weights`, which evaluation, prediction and tracking read without importing training.
"""
