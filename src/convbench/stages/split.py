"""Stage ``split``: stratified, seeded train/val/test indices over the cache -> ``data/split.json``."""

from __future__ import annotations

import argparse

from convbench.data.format import load_cache, save_split
from convbench.data.split import describe_split, make_split
from convbench.errors import ConvbenchError, run_stage
from convbench.data.params import load_data_params
from convbench.paths import Layout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convbench.stages.split", description=__doc__.splitlines()[0])
    parser.parse_args(argv)

    def body() -> None:
        data = load_data_params()
        layout = Layout()
        try:
            cache = load_cache(layout.cache)
        except FileNotFoundError as exc:
            raise ConvbenchError(str(exc)) from None
        origin = cache.origin.numpy()
        split = make_split(
            cache.labels.numpy(),
            origin,
            val_fraction=data.val_fraction,
            test_fraction=data.test_fraction,
            seed=data.seed,
            max_per_class=data.max_per_class,
            stratify=data.stratify,
            classes=cache.classes,
        )
        save_split(layout.split, split)
        print(describe_split(split, origin))

    return run_stage("split", body)


if __name__ == "__main__":
    raise SystemExit(main())
