"""``python -m convbench.stages.evaluate <family>``: test one family's best weights.

See :mod:`convbench.evaluation.evaluate`; MLflow logging goes to the family's training run.
"""

from __future__ import annotations

import argparse

from convbench.errors import run_stage
from convbench.evaluation.evaluate import evaluate_family, log_evaluation, print_summary
from convbench.evaluation.results import read_json
from convbench.families import FAMILIES
from convbench.params import load_params
from convbench.paths import Layout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="convbench evaluate",
        description="Evaluate models/<family>.pt on the validation and test splits; write "
                    "reports/metrics/<family>.json and reports/eval/<family>/.")
    parser.add_argument("family", choices=FAMILIES)
    args = parser.parse_args(argv)

    def body() -> None:
        params = load_params()
        layout = Layout()
        metrics = evaluate_family(args.family, params, layout)
        run_id = read_json(layout.train_summary(args.family), f"train@{args.family}").get("mlflow_run_id")
        log_evaluation(args.family, metrics, run_id, layout.eval_dir(args.family), params.run_params(args.family))
        print_summary(args.family, metrics, layout.metrics(args.family))

    return run_stage("evaluate", body)


if __name__ == "__main__":
    raise SystemExit(main())
