"""``convbench <command>``: the pipeline stages and tools behind one argparse program.

Each command is a module with ``main(argv) -> int`` that parses its own arguments, so
``convbench train resnext`` and DVC's ``python -m convbench.stages.train resnext`` run the
same code. The imports are written out (not module names in strings), so the layering
checks see them, and each runs only when its command does (torch is slow to import).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def _fetch(argv: list[str]) -> int:
    from convbench.stages import fetch
    return fetch.main(argv)


def _unzip(argv: list[str]) -> int:
    from convbench.stages import unzip
    return unzip.main(argv)


def _cache(argv: list[str]) -> int:
    from convbench.stages import cache
    return cache.main(argv)


def _split(argv: list[str]) -> int:
    from convbench.stages import split
    return split.main(argv)


def _train(argv: list[str]) -> int:
    from convbench.stages import train
    return train.main(argv)


def _evaluate(argv: list[str]) -> int:
    from convbench.stages import evaluate
    return evaluate.main(argv)


def _runs(argv: list[str]) -> int:
    from convbench.stages import runs
    return runs.main(argv)


def _report(argv: list[str]) -> int:
    from convbench.stages import report
    return report.main(argv)


def _predict(argv: list[str]) -> int:
    from convbench.evaluation import predict
    return predict.main(argv)


def _tracking(argv: list[str]) -> int:
    from convbench.tracking import __main__ as tracking
    return tracking.main(argv)


def _recipe(argv: list[str]) -> int:
    from convbench import recipes
    return recipes.main(argv)


def _bench(argv: list[str]) -> int:
    """The source checkout's ``bench/run.py``: the benchmark is a tool of the checkout, not of the package."""
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "bench" / "run.py"
    if not script.is_file():
        print(f"convbench bench: error: no {script}: the benchmark is a tool of a source checkout of convbench, "
              "not part of the installed package", file=sys.stderr)
        return 2
    return int(runpy.run_path(str(script))["main"](argv))


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "fetch": (_fetch, "obtain data.archive (CIFAR-10 by default) if it is missing; --track: DVC-track it"),
    "unzip": (_unzip, "extract data.archive safely into data/images"),
    "cache": (_cache, "decode every image once into data/cache.pt"),
    "split": (_split, "stratified train/val/test indices into data/split.json"),
    "train": (_train, "train one family: convbench train {vgg,resnet,resnext}"),
    "evaluate": (_evaluate, "test one family's best weights"),
    "runs": (_runs, "summarise the finished MLflow runs the report compares (seeds, budgets, cardinalities)"),
    "report": (_report, "write reports/comparison.md"),
    "predict": (_predict, "classify image files with trained weights"),
    "tracking": (_tracking, "create the MLflow store once, before parallel runs; `sync`: send spooled calls"),
    "recipe": (_recipe, "run a named set of params (conf/recipes/) as DVC experiments"),
    "bench": (_bench, "speed benchmark against the course notebook (a source checkout's bench/run.py)"),
}


def parser() -> argparse.ArgumentParser:
    """One subcommand per entry of :data:`COMMANDS`; each command's own options pass through to it."""
    top = argparse.ArgumentParser(prog="convbench", description="The convbench pipeline stages and tools.")
    commands = top.add_subparsers(dest="command", metavar="<command>", required=True)
    for name, (run, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, description=summary, add_help=False).set_defaults(run=run)
    return top


def main(argv: list[str] | None = None) -> int:
    """Parse the command name; hand the remaining arguments (``--help`` included) to its module."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        parser().print_help()
        return 0
    args, rest = parser().parse_known_args(argv)
    return int(args.run(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
