"""The ``forgebench`` command: run one benchmark outside the workflow, rebuild the report,
list the stored run history, compare two stored runs, gate a run for CI, or watch a
running workflow.

`report`, `history` and `compare` read stored results only: no benchmark runs. User
mistakes (ForgebenchError) print ``ERROR: ...`` and exit 1; bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import json
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
    """Rebuild the report from stored results, without running any benchmark: the same
    inputs as the workflow's report rule (raw tables in its order, their resource tables,
    and the history rule's run.json and tables when they exist), so the same output. A
    table the run did not produce is listed as not run, with the reason and log the
    workflow recorded (results/summary/not_run.json) when its job failed."""
    from forgebench.report import build_report
    from forgebench.report.not_run import keep_last_good, report_paths, split_present
    from forgebench.workflow import raw_outputs

    config = _load_config(args.config)
    results = Path(args.results)
    # The report rule's inputs, in its order, under --results instead of results/.
    listed = [Path(results, *Path(p).parts[1:]) for p in raw_outputs(config)]
    raw, not_run = split_present(listed, results)
    if not raw:
        raise ForgebenchError(f"no raw results under {results}/raw; run the workflow first")
    for e in not_run:
        print(f"{e['status']}: {e['table']}", file=sys.stderr)
    has_history = (results / "summary" / "run.json").is_file()
    build_report(
        [str(p) for p in raw],
        **report_paths(results, history=has_history),
        code_dir=str(Path(__file__).resolve().parents[2] / "scripts"),
        statistics=config["statistics"],
        comparisons=config["comparisons"],
        targets=config["targets"],
        seed=int(config["seed"]),
        workers=args.workers,
        all_trends=args.all_trends,
        resource_figures=args.resource_figures,
        not_run=not_run,
    )
    keep_last_good(raw, results)
    print(f"wrote {results / 'report' / 'index.html'}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """List the runs stored in RESULTS/history/, oldest first: run id, start time, rows,
    host, CPU model and git commit. Each workflow run is appended there once (its id is a
    hash of its raw rows, so an unchanged run is never added twice); use the ids (or a
    unique prefix, 'latest', 'previous') with `forgebench compare`."""
    from forgebench.history import format_runs, list_runs

    root = Path(args.results, "history")
    if args.history_command == "export":
        from forgebench.run_archive import export_run

        print(export_run(root, args.run, args.to))
        return 0
    if args.history_command == "import":
        from forgebench.run_archive import import_run

        rid = import_run(root, args.archive)
        print(f"run {rid} is in {root}; name it as history.baseline ({rid}) to compare with it")
        return 0
    for line in format_runs(list_runs(root)):
        print(line)
    return 0


def _statistics(config_path: str | None) -> tuple[dict, int]:
    """The config's statistics section and seed; schema defaults without a config file."""
    path = config_path or "config/config.yaml"
    if config_path is None and not Path(path).exists():
        return {}, 0
    config = _load_config(path)
    return dict(config["statistics"]), int(config["seed"])


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare every metric of stored run RUN_B (candidate) against stored run RUN_A
    (baseline) by the rule of docs/verdicts.md (the ratio's interval against the practical
    threshold, Benjamini-Hochberg families per suite; two single runs give at most
    'suspected' changes). A
    metric whose benchmark version, workload parameters or machine differ is 'not
    comparable' unless --cross-machine / --cross-version allow it. Only changed metrics are
    shown unless --all; filter by --suite/--benchmark/--metric/--verdict."""
    from forgebench.history import (
        compare_runs,
        comparison_records,
        filter_comparison,
        format_comparison,
        format_comparison_markdown,
        list_runs,
        load_run,
        resolve_run,
    )

    root = Path(args.results, "history")
    statistics, seed = _statistics(args.config)
    base_id, cand_id = resolve_run(root, args.run_a), resolve_run(root, args.run_b)
    base_rows, base_prov = load_run(root, base_id)
    cand_rows, cand_prov = load_run(root, cand_id)
    table = compare_runs(
        cand_rows,
        base_rows,
        cand_prov,
        base_prov,
        statistics,
        seed=seed,
        cross_machine=args.cross_machine,
        cross_version=args.cross_version,
    )
    shown, hidden = filter_comparison(
        table,
        suite=args.suite,
        benchmark=args.benchmark,
        metric=args.metric,
        verdicts=args.verdict or (),
        changed_only=not args.all,
    )
    if args.format == "json":
        print(json.dumps({"baseline": base_id, "candidate": cand_id,
                          "comparisons": comparison_records(shown),
                          "not_shown": hidden}, indent=2, default=str))  # fmt: skip
        return 0
    if args.format == "markdown":
        lines = format_comparison_markdown(shown)
    else:
        runs = list_runs(root).set_index("run_id", drop=False)
        lines = format_comparison(shown, runs.loc[base_id].to_dict(), runs.loc[cand_id].to_dict())
    for line in lines:
        print(line)
    if hidden:
        left = ", ".join(f"{n} {v}" for v, n in sorted(hidden.items()))
        print(f"not shown ({left}); --all shows every metric")
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    """Exit non-zero when the run's verdicts fail the gate: a regression (suspected ones
    included) against the history or the baseline run, a failure, or a target marked
    `gate: true` that is not met. Prints what fails it, by name, and the counts; writes
    JUnit XML with --junit. Exit 0: passed; 1: failed; 2: the verdict tables are missing."""
    from forgebench.gate import evaluate, format_result, junit_xml

    try:
        result = evaluate(
            args.results,
            allow_suspected=args.allow_suspected,
            strict_targets=args.strict_targets,
            fail_on_noisy=args.fail_on_noisy,
        )
    except ForgebenchError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    report = Path(args.results, "report", "index.html")
    for line in format_result(result, report_path=str(report) if report.exists() else None):
        print(line)
    if args.junit:
        Path(args.junit).parent.mkdir(parents=True, exist_ok=True)
        Path(args.junit).write_text(junit_xml(result), encoding="utf-8")
    return result.exit_code()


def cmd_watch(args: argparse.Namespace) -> int:
    """Follow a running workflow from another terminal: jobs done, running, failed and
    waiting, the job time left by each job's last duration, and each running job's CPU
    and memory from its sampler; ends with the report's path. Exit 1 when a job failed."""
    from forgebench.watch import watch

    try:
        return watch(args.directory, interval_s=args.interval, once=args.once)
    except FileNotFoundError as exc:
        raise ForgebenchError(str(exc)) from exc
    except KeyboardInterrupt:
        return 130


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
    rep.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes for the bootstraps and figures; the same output with any number "
        "(default: %(default)s)",
    )
    rep.add_argument(
        "--all-trends",
        action="store_true",
        help="draw a history trend for every metric, not only those that changed",
    )
    rep.add_argument(
        "--resource-figures",
        action="store_true",
        help="draw each job's resource timeline (on pages/resources.html)",
    )
    rep.set_defaults(func=cmd_report)
    hist = sub.add_parser(
        "history",
        help="List the stored runs (results/history/), oldest first.",
        description=cmd_history.__doc__,
    )
    hist.add_argument("--results", default="results", help="results folder (default: %(default)s)")
    hist.set_defaults(func=cmd_history, history_command=None)
    hist_sub = hist.add_subparsers(dest="history_command")
    exp = hist_sub.add_parser(
        "export", help="Pack one stored run into a .tar.gz (for a CI job's baseline)."
    )
    exp.add_argument("run", metavar="RUN", help="run id, unique prefix, 'latest' or 'previous'")
    exp.add_argument("--to", default=".", help="a folder or a .tar.gz path (default: %(default)s)")
    imp = hist_sub.add_parser(
        "import", help="Add an exported run to this history (checked against its id)."
    )
    imp.add_argument("archive", metavar="ARCHIVE", help="a .tar.gz from `history export`")
    comp = sub.add_parser(
        "compare",
        help="Compare two stored runs, metric by metric.",
        description=cmd_compare.__doc__,
    )
    comp.add_argument("run_a", metavar="RUN_A", help="baseline run: id, unique prefix, 'previous'")
    comp.add_argument("run_b", metavar="RUN_B", help="candidate run: id, unique prefix, 'latest'")
    comp.add_argument("--results", default="results", help="results folder (default: %(default)s)")
    comp.add_argument(
        "--config",
        default=None,
        help="config whose statistics section (alpha, thresholds, resamples) and seed are "
        "used (default: config/config.yaml if present, else the schema defaults)",
    )
    comp.add_argument("--suite", default=None, help="only this suite")
    comp.add_argument("--benchmark", default=None, help="only this benchmark")
    comp.add_argument("--metric", default=None, help="only this metric")
    comp.add_argument(
        "--verdict", action="append", default=None, help="only these verdicts (repeatable)"
    )
    comp.add_argument(
        "--all", action="store_true", help="show unchanged and inconclusive metrics too"
    )
    comp.add_argument(
        "--format",
        choices=("text", "markdown", "json"),
        default="text",
        help="output: text (default), a Markdown table, or JSON",
    )
    comp.add_argument(
        "--cross-machine",
        action="store_true",
        help="compare metrics measured on different machines (host or CPU model) too",
    )
    comp.add_argument(
        "--cross-version",
        action="store_true",
        help="compare metrics of different benchmark versions too",
    )
    comp.set_defaults(func=cmd_compare)
    gate = sub.add_parser(
        "gate",
        help="Exit non-zero when the run's verdicts fail the gate.",
        description=cmd_gate.__doc__,
    )
    gate.add_argument("--results", default="results", help="results folder (default: %(default)s)")
    gate.add_argument("--junit", default=None, help="also write JUnit XML to this path")
    gate.add_argument(
        "--allow-suspected",
        action="store_true",
        help="do not fail on a suspected regression (the current run alone, unconfirmed)",
    )
    gate.add_argument(
        "--strict-targets",
        action="store_true",
        help="a gated target fails unless met (inconclusive fails too)",
    )
    gate.add_argument(
        "--fail-on-noisy",
        action="store_true",
        help="also fail on verdicts made while other processes loaded the machine",
    )
    gate.set_defaults(func=cmd_gate)
    wat = sub.add_parser("watch", help=cmd_watch.__doc__, description=cmd_watch.__doc__)
    wat.add_argument(
        "--directory", default=".", help="the workflow's working directory (default: %(default)s)"
    )
    wat.add_argument(
        "--interval", type=float, default=5.0, help="seconds between updates (default: %(default)s)"
    )
    wat.add_argument("--once", action="store_true", help="print one update and exit")
    wat.set_defaults(func=cmd_watch)
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
