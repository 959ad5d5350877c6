"""``convbench <command>``: the pipeline stages and tools behind one command.

Each command is a module with ``main(argv) -> int``; this only dispatches, so
``convbench train resnext`` and DVC's ``python -m convbench.stages.train resnext``
run the same code.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "fetch": ("convbench.stages.fetch", "obtain data.archive (CIFAR-10 by default) if it is missing"),
    "unzip": ("convbench.stages.unzip", "extract data.archive safely into data/images"),
    "cache": ("convbench.stages.cache", "decode every image once into data/cache.pt"),
    "split": ("convbench.stages.split", "stratified train/val/test indices into data/split.json"),
    "train": ("convbench.stages.train", "train one family: convbench train {vgg,resnet,resnext}"),
    "evaluate": ("convbench.stages.evaluate", "test one family's best weights"),
    "runs": ("convbench.stages.runs", "summarise the finished MLflow runs the report compares (seeds, cardinality)"),
    "report": ("convbench.stages.report", "write reports/comparison.md"),
    "predict": ("convbench.evaluation.predict", "classify image files with trained weights"),
    "tracking": ("convbench.tracking.__main__", "create the MLflow store once, before parallel runs; `sync`: send spooled calls"),
    "recipe": ("convbench.recipes", "run a named set of params (conf/recipes/) as DVC experiments"),
    "bench": ("convbench.bench.run", "speed benchmark against the course notebook: reports/benchmark.md"),
}


def usage() -> str:
    """The command list, for ``convbench`` without arguments or with ``--help``."""
    width = max(map(len, COMMANDS))
    lines = ["usage: convbench <command> [args...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv[0]`` to its module's ``main(argv[1:])``."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    if argv[0] not in COMMANDS:
        print(f"convbench: error: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
