"""``python -m convbench.stages.report``: write reports/comparison.md (see convbench.evaluation.report)."""

from __future__ import annotations

import argparse

from convbench.errors import run_stage
from convbench.evaluation.report import headline_metrics, log_report, write_report
from convbench.evaluation.studies import load_runs
from convbench.params import load_params
from convbench.paths import Layout
from convbench.tracking.store import browse_hint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convbench report", description="Compare the evaluated families in "
                                     "reports/comparison.md with figures in reports/figures/.")
    parser.parse_args(argv)

    def body() -> None:
        params = load_params()
        layout = Layout()
        path, results, _ = write_report(params, load_runs(layout.reports / "runs.json"), layout)
        logged = log_report(path, layout.reports / "figures", headline_metrics(results))
        print(f"wrote {path} ({len(results)} model(s)) and {layout.reports / 'figures'}/")
        if logged and (hint := browse_hint()):
            print(hint)

    return run_stage("report", body)


if __name__ == "__main__":
    raise SystemExit(main())
