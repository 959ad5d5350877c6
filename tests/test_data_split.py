"""The split stage's pure function: stratified, disjoint, complete, deterministic, pre-split aware."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.data.format import ORIGINS, load_split, save_split
from convbench.data.split import describe_split, make_split
from convbench.errors import ConvbenchError

ALL, TRAIN, VAL, TEST = (ORIGINS.index(o) for o in ("all", "train", "val", "test"))


def dataset(per_class: list[int], origin: int = ALL, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled labels with ``per_class[c]`` images of class c, all from ``origin``."""
    labels = np.repeat(np.arange(len(per_class)), per_class)
    labels = np.random.default_rng(seed).permutation(labels)
    return labels, np.full(len(labels), origin, dtype=np.uint8)


def split_of(labels, origin, **kw):
    args = {"val_fraction": 0.15, "test_fraction": 0.15, "seed": 42, "max_per_class": 0} | kw
    return make_split(labels, origin, **args)


def test_split_is_stratified_disjoint_and_complete():
    per_class = [20, 33, 47, 61, 8]
    labels, origin = dataset(per_class)
    split = split_of(labels, origin, val_fraction=0.2, test_fraction=0.1)
    sets = {k: set(v) for k, v in split.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert sets["train"] | sets["val"] | sets["test"] == set(range(len(labels)))
    for name, fraction in (("val", 0.2), ("test", 0.1)):
        got = np.bincount(labels[split[name]], minlength=len(per_class))
        assert np.all(np.abs(got - np.array(per_class) * fraction) <= 1), (name, got)
    assert all(v == sorted(v) for v in split.values())


def test_same_inputs_give_the_same_bytes_and_the_seed_matters(tmp_path):
    labels, origin = dataset([30, 30, 30])
    save_split(tmp_path / "a.json", split_of(labels, origin))
    save_split(tmp_path / "b.json", split_of(labels.copy(), origin.copy()))
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert split_of(labels, origin, seed=7) != split_of(labels, origin)
    loaded = load_split(tmp_path / "a.json")
    assert loaded["val"].tolist() == split_of(labels, origin)["val"]


def test_presplit_archive_keeps_its_test_folder_and_splits_val_from_train():
    labels_tr, origin_tr = dataset([40, 50], TRAIN)
    labels_te, origin_te = dataset([10, 10], TEST, seed=1)
    labels, origin = np.concatenate([labels_tr, labels_te]), np.concatenate([origin_tr, origin_te])
    split = split_of(labels, origin, val_fraction=0.2, test_fraction=0.3)
    assert split["test"] == list(range(90, 110))
    assert set(split["val"]) | set(split["train"]) == set(range(90))
    assert np.bincount(labels[split["val"]]).tolist() == [8, 10]
    assert "test from the archive's folders" in describe_split(split, origin)


def test_train_val_test_folders_are_all_kept():
    parts = [dataset([6, 6], TRAIN), dataset([2, 2], VAL, 1), dataset([3, 3], TEST, 2)]
    labels, origin = (np.concatenate(x) for x in zip(*parts))
    split = split_of(labels, origin)
    assert split == {"train": list(range(12)), "val": list(range(12, 16)), "test": list(range(16, 22))}


@pytest.mark.parametrize("origin_code", [ALL, TRAIN])
def test_max_per_class_caps_every_class_in_every_split(origin_code):
    labels, origin = dataset([40, 25, 9], origin_code)
    full = split_of(labels, origin)
    capped = split_of(labels, origin, max_per_class=5)
    for name in ("train", "val", "test"):
        got = np.bincount(labels[capped[name]], minlength=3)
        available = np.bincount(labels[full[name]], minlength=3)
        assert got.tolist() == np.minimum(available, 5).tolist()
        assert set(capped[name]) <= set(full[name])
    assert capped == split_of(labels, origin, max_per_class=5)


def test_tiny_classes_keep_a_training_image():
    labels, origin = dataset([1, 2, 3, 20])
    split = split_of(labels, origin, val_fraction=0.45, test_fraction=0.45)
    assert np.all(np.bincount(labels[split["train"]], minlength=4) >= 1)


def test_too_few_images_for_a_val_split_is_an_error():
    labels, origin = dataset([2, 2, 2])
    with pytest.raises(ConvbenchError, match=r"val split is empty.*data\.val_fraction"):
        split_of(labels, origin, val_fraction=0.1, test_fraction=0.0)
    assert split_of(labels, origin, val_fraction=0.0, test_fraction=0.0)["val"] == []


def test_a_class_without_training_images_is_an_error():
    parts = [dataset([5, 0], TRAIN), dataset([2, 2], TEST, 1)]
    labels, origin = (np.concatenate(x) for x in zip(*parts))
    with pytest.raises(ConvbenchError, match="class 'dog' has no training images"):
        make_split(labels, origin, val_fraction=0.1, test_fraction=0.1, seed=0, classes=["cat", "dog"])
