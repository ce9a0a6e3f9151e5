"""The ``forgebench`` command: run one benchmark outside the workflow, or rebuild the report.

User mistakes (ForgebenchError) print ``ERROR: ...`` and exit 1; bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from forgebench.errors import ForgebenchError


def _load_config(path: str) -> dict:
    from snakemake.utils import validate

    from forgebench.config import SCHEMA_PATH, check_config, load_yaml
    from forgebench.workflow import check_references

    config = load_yaml(path)
    check_config(config, SCHEMA_PATH)
    validate(config, str(SCHEMA_PATH))
    check_references(config)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    """Run one benchmark with its section of the config, print its summary and targets."""
    import pandas as pd

    from forgebench import analysis
    from forgebench.report import format_summary
    from forgebench.runner import run_benchmark

    config = _load_config(args.config)
    suite, _, name = args.benchmark.partition("/")
    section = config["suites"].get(suite, {}).get("benchmarks", {}).get(name)
    if section is None:
        raise ForgebenchError(
            f"{args.benchmark!r} has no section in {args.config}; add "
            f"suites.{suite}.benchmarks.{name} to run it"
        )
    out = Path(args.out_dir) / suite
    frame = run_benchmark(
        suite,
        name,
        config,
        measurements_path=out / f"{name}.parquet",
        resources_path=out / f"{name}.resources.parquet",
    )
    seed = int(config["seed"])
    summary = analysis.summarize_measurements(frame, config["statistics"], seed=seed)
    for line in format_summary(summary):
        print(line)
    targets = [
        t for t in config["targets"] if t.get("benchmark") == name and t.get("suite") == suite
    ]
    checked = analysis.check_targets(
        targets, pd.DataFrame(), frame, config["statistics"], seed=seed
    )
    for t in checked.to_dict("records"):
        print(
            f"target {t['name']!r}: {t['verdict']} "
            f"(estimate {t['estimate']}, CI [{t['ci_low']}, {t['ci_high']}])"
        )
    print(f"wrote {out / f'{name}.parquet'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild the report from stored raw tables, without running any benchmark."""
    from forgebench.report import build_report

    config = _load_config(args.config)
    raw = sorted(
        p
        for p in Path(args.results, "raw").glob("*/*.parquet")
        if not p.name.endswith(".resources.parquet")
    )
    if not raw:
        raise ForgebenchError(f"no raw results under {args.results}/raw; run the workflow first")
    build_report(
        [str(p) for p in raw],
        summary_path=Path(args.results, "summary", "summary.parquet"),
        verdicts_path=Path(args.results, "summary", "verdicts.parquet"),
        html_path=Path(args.results, "report", "index.html"),
        plots_dir=Path(args.results, "report", "plots"),
        provenance_path=Path(args.results, "report", "provenance.json"),
        statistics=config["statistics"],
        comparisons=config["comparisons"],
        targets=config["targets"],
        seed=int(config["seed"]),
    )
    print(f"wrote {Path(args.results, 'report', 'index.html')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forgebench", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help=cmd_run.__doc__, description=cmd_run.__doc__)
    run.add_argument("benchmark", help="SUITE/NAME, e.g. network/sockperf_compare")
    run.add_argument(
        "--config", default="config/config.yaml", help="config file (default: %(default)s)"
    )
    run.add_argument(
        "--out-dir", default="results/raw", help="where raw tables go (default: %(default)s)"
    )
    run.set_defaults(func=cmd_run)
    rep = sub.add_parser("report", help=cmd_report.__doc__, description=cmd_report.__doc__)
    rep.add_argument(
        "--config", default="config/config.yaml", help="config file (default: %(default)s)"
    )
    rep.add_argument("--results", default="results", help="results folder (default: %(default)s)")
    rep.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        return args.func(args)
    except ForgebenchError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
