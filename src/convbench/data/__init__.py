"""Data stages: obtain the archive, unzip it safely, cache it as uint8 tensors, split it."""
