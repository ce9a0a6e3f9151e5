"""build_report: read the stored tables, decide the verdicts, plan and draw the figures
each section shows, and write the tables and pages.

The main page (index.html) answers "what needs attention" on its first screen and then
gives each suite one compact section; the full tables are on linked pages under
``pages/`` (one per suite, history, environment). Inputs are read in sorted order with
seeded bootstraps and no clock, so equal stored results give equal bytes, with or
without the process pool.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from forgebench import analysis, plots, record
from forgebench.atomic import write_text_atomic
from forgebench.provenance import collect_provenance
from forgebench.report import (
    calibration,
    compression,
    environment,
    evaluation,
    evomerge,
    history,
    knowledge,
    overview,
    service,
    suites,
)
from forgebench.report.cells import Cells
from forgebench.report.format import finite, format_interval, format_value, fraction, link
from forgebench.report.format import relative_to_results as _relative
from forgebench.report.not_run import write_not_run
from forgebench.report.summary import fit_markdown, summary_document
from forgebench.stats import vocabulary as V

log = logging.getLogger(__name__)

#: Suites with a section of their own: suite -> (section key, anchor, title).
OWN_SECTIONS: dict[str, tuple[str, str, str]] = {
    "eval": ("evaluation", "evaluation", "Evaluation"),
    "eval_pairs": ("evaluation", "evaluation", "Evaluation"),
    "models": ("models", "model-build", "Models"),
    "compression": ("compression", "compression", "Compression"),
    "service": ("service", "service", "Service"),
    "knowledge": ("knowledge", "knowledge", "Knowledge"),
    "evomerge": ("evomerge", "evomerge", "EvoMerge"),
}
_SECTION_ORDER = ("evaluation", "models", "compression", "service", "knowledge", "evomerge")
_PAGE_NAME = re.compile(r"^(suite-[A-Za-z0-9_.-]+|history|environment|resources)\.html$")


def _jinja(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("forgebench", "templates"),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md"] = lambda v: str(v).replace("|", "\\|").replace("\n", " ")
    env.filters["slug"] = lambda v: str(v).replace(" ", "-")
    return env


def _warm_up() -> None:
    """A pool worker's first task: import the drawing code while the report reads tables."""
    import forgebench.plots  # noqa: F401


@contextlib.contextmanager
def _process_pool(workers: int) -> Iterator[Executor | None]:
    """A pool of ``workers`` processes (None for one: everything runs here). Spawned, not
    forked: the report process has reader threads by then (Arrow), and a fresh interpreter
    per worker is safe wherever it runs; scripts/report.py keeps its code under a
    ``__main__`` guard because spawned workers import the main script."""
    if workers <= 1:
        yield None
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        for _ in range(workers):  # start every worker now, each importing matplotlib
            pool.submit(_warm_up)
        yield pool
    finally:  # after an error, queued figures are not drawn
        pool.shutdown(wait=True, cancel_futures=True)


def _figure_entries(items: Sequence[plots.Figure], base_dir: Path) -> list[dict[str, str]]:
    """Figures as the templates show them, in file-name order, linked from ``base_dir``."""
    return [
        {
            "src": Path(os.path.relpath(f.path.resolve(), base_dir.resolve())).as_posix(),
            "title": f.title,
            "caption": f.caption,
            "category": plots.KINDS[f.kind][0],
        }
        for f in sorted(items, key=lambda f: f.path.name)
    ]


def _page_href(name: str) -> str:
    return f"pages/{name}.html"


def _suite_block(
    suite: str,
    rows: Sequence[Mapping[str, Any]],
    comp_rows: Sequence[Mapping[str, Any]],
    target_rows: Sequence[Mapping[str, Any]],
    figures: Sequence[plots.Figure],
    named: Mapping[str, set[str]],
    cells: Cells,
    html_dir: Path,
    *,
    skip_benchmarks: Sequence[str] = (),
    own_table: Sequence[str] = (),
) -> dict[str, Any]:
    """One suite on the main page: verdicts, headline table, warnings by kind, at most
    one figure per benchmark (the rest collapsed) and the link to its full page.

    ``skip_benchmarks`` are left out entirely (another section shows them whole);
    ``own_table`` are left out of the headline table only (their section's own table
    shows their headline figures)."""
    shown = [r for r in rows if r["benchmark"] not in skip_benchmarks]
    headline = suites.headline_rows([r for r in shown if r["benchmark"] not in own_table], named)
    for r in headline:
        if r["ci"] == "—" and r["n_ok"] > 0:
            low, high, _ = cells.interval((suite, r["benchmark"], r["case"], r["metric"]))
            if finite(low) and finite(high):
                fmt = (
                    fraction
                    if r["unit"] == "fraction"
                    else (lambda x, u=r["unit"]: format_value(x, u))
                )
                r["ci"] = format_interval(low, high, fmt)
                r["ci_low_value"], r["ci_high_value"] = float(low), float(high)
    wanted: dict[str, list[str]] = {}
    for h in headline:  # in headline order: named metrics first, then the main latency
        wanted.setdefault(h["benchmark"], [])
        if h["metric"] not in wanted[h["benchmark"]]:
            wanted[h["benchmark"]].append(h["metric"])
    main, more = suites.split_figures(figures, wanted)
    failures: dict[str, int] = {}
    for r in rows:
        for part in filter(None, r["failures"].split(", ")):
            status, _, n = part.rpartition(": ")
            failures[status] = failures.get(status, 0) + int(n)
    mine_targets = [t for t in target_rows if t.get("benchmark") not in skip_benchmarks]
    return {
        "name": suite,
        "anchor": f"suite-{suite}",
        "comparisons": list(comp_rows),
        "targets": mine_targets,
        "headline": headline,
        "warnings": suites.warning_lines(shown),
        "figures": _figure_entries(main, html_dir),
        "more_figures": _figure_entries(more, html_dir),
        "page": _page_href(f"suite-{suite}"),
        "n_rows": len(rows),
        "n_benchmarks": len({r["benchmark"] for r in rows}),
        "n_failed": sum(int(r["n_failed"]) for r in rows),
        "failures": dict(sorted(failures.items())),
    }


def _suite_page(
    suite: str,
    rows: Sequence[Mapping[str, Any]],
    comp_rows: Sequence[Mapping[str, Any]],
    target_rows: Sequence[Mapping[str, Any]],
    resources: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    return {
        "name": suite,
        "rows": list(rows),
        "comparisons": list(comp_rows),
        "targets": list(target_rows),
        "warnings": suites.warning_lines(rows),
        "resources": list(resources),
    }


def build_report(
    measurement_paths: Sequence[str],
    *,
    summary_path: str | Path,
    verdicts_path: str | Path,
    html_path: str | Path,
    plots_dir: str | Path,
    statistics: Mapping[str, Any],
    comparisons: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    seed: int,
    provenance_path: str | Path | None = None,
    code_dir: str | None = None,
    resource_paths: Sequence[str] | None = None,
    markdown_path: str | Path | None = None,
    json_path: str | Path | None = None,
    run_info_path: str | Path | None = None,
    baseline_comparison_path: str | Path | None = None,
    regressions_path: str | Path | None = None,
    history_dir: str | Path | None = None,
    lineage_path: str | Path | None = None,
    workers: int = 1,
    pages_dir: str | Path | None = None,
    all_trends: bool = False,
    resource_figures: bool = False,
    not_run: Sequence[Mapping[str, Any]] = (),
    not_run_path: str | Path | None = None,
) -> dict[str, Any]:
    """Read every stored table; write summary and verdict Parquet, figures, index.html
    with its linked pages, summary.md and summary.json (beside index.html unless given);
    return the summary document.

    Inputs are read in sorted order, so the same stored results give the same rows in
    the same order, and so the same seeded bootstrap intervals, however they are listed.
    Resource samples default to the ``.resources.parquet`` beside each raw table; the
    history inputs are optional and the report says "no history yet" without them.
    EvoMerge's lineage defaults to results/evomerge/lineage.json beside results/raw;
    without it the EvoMerge section shows what the fitness rows say.

    ``pages_dir`` (default ``pages/`` beside index.html) holds the full tables: a page
    per suite, the history and the environment. ``all_trends`` draws a history trend for
    every metric (default: those whose history verdict names a change);
    ``resource_figures`` draws each job's resource timeline on pages/resources.html.

    ``not_run`` names the tables this run was meant to produce and did not (entries of
    :mod:`.not_run`): the overview lists them with their job's log and last good copy,
    their suites are marked, summary.json carries them, and ``not_run_path`` (the
    workflow's results/summary/not_run.json) records them for the gate; an empty list
    is written after a complete run.

    ``workers`` > 1 runs a pool of that many processes: the stored history is read, the
    summaries' bootstraps are computed and the figures are drawn in it. Every bootstrap
    has its own seeded generator and every figure is drawn by the same code from the same
    data, so the tables and PNGs are byte-identical to a one-process build.
    """
    with _process_pool(workers) as pool:
        paths = sorted(str(p) for p in measurement_paths)
        html_path = Path(html_path)
        html_dir = html_path.parent
        pages = Path(pages_dir) if pages_dir is not None else html_dir / "pages"
        markdown_path = Path(markdown_path or html_dir / "summary.md")
        json_path = Path(json_path or html_dir / "summary.json")
        confidence = history.confidence_of(statistics)
        history_args = {
            "run_info_path": run_info_path,
            "baseline_comparison_path": baseline_comparison_path,
            "regressions_path": regressions_path,
            "history_dir": history_dir,
            "confidence": confidence,
        }
        # The stored history is independent of this run's tables: read it beside them.
        history_future = (
            pool.submit(history.load_history, **history_args) if pool is not None else None
        )
        frame = record.concat_measurements(paths)
        log.info("read %d rows from %d files", len(frame), len(paths))
        finish_summary = analysis.start_summaries(frame, statistics, seed=seed, executor=pool)
        # Figures of the raw rows and the stored history are planned while the workers
        # compute the summaries, then drawn by them while this process compares cases,
        # checks targets and writes the tables and pages.
        early: list[plots.FigureJob] = []
        figures = plots.latency_cdfs(frame, plots_dir, jobs=early)
        resource_figs = (
            environment.plan_resource_figures(paths, resource_paths, plots_dir, early)
            if resource_figures
            else []
        )
        hist = (
            history_future.result()
            if history_future is not None
            else history.load_history(**history_args)
        )
        trend_figs = history.plan_trends(hist, plots_dir, early, all_trends=all_trends)
        drawing = plots.submit(early, pool)
        summary = finish_summary()
        compared = analysis.compare_cases(frame, comparisons, statistics, seed=seed)
        checked = analysis.check_targets(targets, compared, frame, statistics, seed=seed)
        verdicts = pd.concat([compared, checked], ignore_index=True)
        audit = analysis.audit_table(verdicts)
        if provenance_path is not None:  # where and when this report ran: kept out of the tables
            prov = collect_provenance(seed=seed, code_dir=code_dir)
            prov["inputs"] = [_relative(p) for p in paths]
            write_text_atomic(provenance_path, json.dumps(prov, indent=2, sort_keys=True) + "\n")
        not_run = sorted((dict(e) for e in not_run), key=lambda e: str(e["table"]))
        if not_run_path is not None:
            write_not_run(not_run_path, not_run)
        inputs = {"inputs": [_relative(p) for p in paths]}
        record.write_derived_table(summary, summary_path, {"kind": "summary", **inputs})
        record.write_derived_table(verdicts, verdicts_path, {"kind": "summary", **inputs})

        cells = Cells(summary, confidence)
        lineage = evomerge.read_lineage(
            lineage_path if lineage_path else evomerge.default_lineage_path(paths)
        )
        individuals = evomerge.evomerge_individuals(cells, lineage)
        sections = suite_sections(frame, cells, individuals)
        comp_rows, target_rows = overview.verdict_rows(verdicts, summary)
        sections["calibration"] = calibration.calibration_section(
            cells, target_rows, checked.to_dict("records") if len(checked) else []
        )
        late: list[plots.FigureJob] = []
        figures += _derived_figures(
            frame, summary, compared, statistics, plots_dir, individuals, sections, late
        )
        drawing += plots.submit(late, pool)

        context = _context(
            frame=frame,
            summary=summary,
            verdicts=verdicts,
            audit=audit,
            history_=hist,
            figures=figures,
            trend_figures=trend_figs,
            paths=paths,
            statistics=statistics,
            html_dir=html_dir,
            pages=pages,
            sections=sections,
            cells=cells,
            comp_rows=comp_rows,
            target_rows=target_rows,
            all_trends=all_trends,
            resource_figures=resource_figs,
            not_run=not_run,
        )
        tables = {
            "summary": _table_name(summary_path),
            "verdicts": _table_name(verdicts_path),
            "raw": "raw/<suite>/<benchmark>.parquet",
        }
        for key, path in (
            ("baseline_comparison", baseline_comparison_path),
            ("regressions", regressions_path),
        ):
            if path is not None and Path(path).is_file():
                tables[key] = _table_name(path)
        doc = summary_document(
            inputs=paths,
            frame=frame,
            summary=summary,
            verdicts=verdicts,
            audit=audit,
            history=hist,
            statistics=statistics,
            seed=seed,
            headline={b["name"]: b["headline"] for b in context["all_blocks"]},
            attention=context["overview"]["attention"] + context["overview"]["attention_more"],
            tables=tables,
        )
        if not_run:
            doc["not_run"] = not_run
        context["doc"] = doc
        context["links"] = {
            k: v
            for k, v in {
                "summary.md": link(markdown_path, html_dir),
                "summary.json": link(json_path, html_dir),
                "provenance.json": link(provenance_path, html_dir) if provenance_path else None,
            }.items()
            if v
        }
        write_text_atomic(
            json_path,
            json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n",
        )
        markdown = fit_markdown(_jinja(False).get_template("summary.md.j2").render(**context))
        html = _jinja(True)
        text = html.get_template("report.html.j2").render(**context)
        rendered = {
            f"{name}.html": html.get_template("page.html.j2").render(
                **context, page=page, page_name=name
            )
            for name, page in context["pages"].items()
        }
        for future in drawing:  # every figure written before the pages that show them
            future.result()
        plots.remove_stale(plots_dir, [*figures, *trend_figs, *resource_figs])
        _remove_stale_pages(pages, rendered)
        for name, page_text in rendered.items():
            write_text_atomic(pages / name, page_text)
        write_text_atomic(markdown_path, markdown)
        write_text_atomic(html_path, text)
        log.info(
            "report written to %s (%d figures, %d pages)",
            html_path,
            len(figures) + len(trend_figs) + len(resource_figs),
            len(rendered),
        )
        return doc


def _table_name(path: str | Path) -> str:
    """A derived table as summary.json names it: ``summary/<file>`` in the results layout,
    else the file name; never a host path, so the document is the same wherever it is."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name == "summary" else p.name


def _remove_stale_pages(pages: Path, keep: Mapping[str, str]) -> None:
    """Delete pages of an earlier build that this build did not write."""
    if not pages.is_dir():
        return
    for path in sorted(pages.glob("*.html")):
        if _PAGE_NAME.match(path.name) and path.name not in keep:
            path.unlink()


def suite_sections(
    frame: pd.DataFrame, cells: Cells, individuals: pd.DataFrame
) -> dict[str, dict[str, Any] | None]:
    """The suites' own tables, each None where its suite has no rows."""
    return {
        "evaluation": evaluation.evaluation_section(cells),
        "models": evaluation.models_section(cells),
        "compression": compression.compression_section(cells),
        "service": service.service_section(frame, cells),
        "knowledge": knowledge.knowledge_section(cells),
        "evomerge": evomerge.evomerge_section(cells, individuals),
    }


def _own_tables(sections: Mapping[str, dict[str, Any] | None], cells: Cells) -> dict[str, set[str]]:
    """suite -> the benchmarks whose headline figures a section's own table shows, so
    the suite's headline table does not repeat them."""
    out: dict[str, set[str]] = {}
    ev = sections.get("evaluation")
    if ev:
        out["eval"] = {t["task"] for t in ev["tasks"]} | {
            b for b in cells.benchmarks("eval") if b.startswith("suite_")
        }
        out["eval_pairs"] = set(cells.benchmarks("eval_pairs"))
    if sections.get("models"):
        out["models"] = {"build"}
    comp = sections.get("compression")
    if comp:
        out["compression"] = {t["benchmark"] for t in comp["tables"]}
    if sections.get("service"):
        out["service"] = set(cells.benchmarks("service"))
    if sections.get("knowledge"):
        out["knowledge"] = set(knowledge.KNOWLEDGE_HEADLINES)
    if sections.get("evomerge"):
        out["evomerge"] = set(cells.benchmarks("evomerge"))
    return out


def _derived_figures(
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    compared: pd.DataFrame,
    statistics: Mapping[str, Any],
    plots_dir: str | Path,
    individuals: pd.DataFrame,
    sections: Mapping[str, Any],
    jobs: list[plots.FigureJob],
) -> list[plots.Figure]:
    """Figures of the summary, the comparisons and the sections' own tables: each
    planned by the code that knows what its section shows."""
    confidence = history.confidence_of(statistics)
    wanted = frame["metric"].isin((*plots.ACCURACY_METRICS, "n_docs", "chance_acc"))
    accuracy_rows = frame[wanted & ~frame["suite"].isin(("eval",))] if len(frame) else frame
    return [
        *plots.percentile_bars(summary, plots_dir, jobs=jobs),
        *plots.comparison_boxes(frame, compared, plots_dir, jobs=jobs),
        *evaluation.plan_figures(sections.get("evaluation"), plots_dir, jobs),
        *plots.accuracy_plots(accuracy_rows, plots_dir, confidence=confidence, jobs=jobs),
        *plots.compression_plots(summary, plots_dir, jobs=jobs),
        *compression.plan_figures(sections.get("compression"), plots_dir, jobs),
        *service.plan_figures(sections.get("service"), plots_dir, jobs),
        *plots.scaling_plots(summary, plots_dir, jobs=jobs),
        *plots.ann_tradeoff_plots(summary, plots_dir, jobs=jobs),
        *plots.fitness_plots(individuals, plots_dir, jobs=jobs),
    ]


def _context(
    *,
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    verdicts: pd.DataFrame,
    audit: tuple[pd.DataFrame, Mapping[str, Any]],
    history_: history.History,
    figures: Sequence[plots.Figure],
    trend_figures: Sequence[plots.Figure],
    paths: Sequence[str],
    statistics: Mapping[str, Any],
    html_dir: Path,
    pages: Path,
    sections: Mapping[str, dict[str, Any] | None],
    cells: Cells,
    comp_rows: Sequence[dict[str, Any]],
    target_rows: Sequence[dict[str, Any]],
    all_trends: bool,
    resource_figures: Sequence[plots.Figure],
    not_run: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Everything the HTML pages and the Markdown summary show, already formatted."""
    statistics = overview.statistics_with_defaults(statistics)
    rows = suites.summary_rows(summary)
    resources = suites.resource_rows(paths)
    suite_names = sorted(
        {r["suite"] for r in rows}
        | {r["suite"] for r in comp_rows}
        | {r["suite"] for r in target_rows if r["suite"]}
        | {f.suite for f in figures}
        | {str(e["suite"]) for e in not_run if e["suite"]}
    )
    verdict_records = verdicts.to_dict("records") if len(verdicts) else []
    covered = _own_tables(sections, cells)
    blocks: dict[str, dict[str, Any]] = {}
    suite_pages: dict[str, dict[str, Any]] = {}
    for name in suite_names:
        mine = [r for r in rows if r["suite"] == name]
        comps = [r for r in comp_rows if r["suite"] == name]
        targs = [r for r in target_rows if r["suite"] == name]
        named = suites.named_metrics(verdict_records, [], name)
        skip = (calibration.BENCHMARK,) if name == calibration.SUITE else ()
        blocks[name] = _suite_block(
            name,
            mine,
            comps,
            targs,
            [f for f in figures if f.suite == name],
            named,
            cells,
            html_dir,
            skip_benchmarks=skip if sections.get("calibration") else (),
            own_table=covered.get(name, ()),
        )
        blocks[name]["not_run"] = [_not_run_row(e) for e in not_run if e["suite"] == name]
        suite_pages[f"suite-{name}"] = _suite_page(
            name, mine, comps, targs, [r for r in resources if r["suite"] == name]
        )
    # Main page: the suites with a section of their own first, then the others by name.
    main_sections = []
    for key in _SECTION_ORDER:
        covered = [s for s in suite_names if OWN_SECTIONS.get(s, ("",))[0] == key]
        if sections.get(key) is None and not covered:
            continue
        _, anchor, title = next(v for v in OWN_SECTIONS.values() if v[0] == key)
        main_sections.append(
            {
                "key": key,
                "anchor": anchor,
                "title": title,
                "data": sections.get(key),
                "blocks": [blocks[s] for s in covered],
            }
        )
    # A suite whose every benchmark another section shows whole (harness with only the
    # calibration benchmark) keeps its page but needs no section of its own.
    generic = [
        blocks[s]
        for s in suite_names
        if s not in OWN_SECTIONS
        and not (
            s == calibration.SUITE
            and sections.get("calibration")
            and {r["benchmark"] for r in rows if r["suite"] == s} <= {calibration.BENCHMARK}
        )
    ]
    table, overall = audit
    view = overview.overview(comp_rows, target_rows, history_)
    unit_of = overview.units(summary)
    failed_ops = frame[frame["status"].map(V.is_failure)] if len(frame) else frame
    by_design = frame[frame["status"].isin(V.BY_DESIGN_STATUSES)] if len(frame) else frame
    baseline_families = (
        sorted({str(f) for f in history_.baseline["family"].dropna()})
        if history_.baseline is not None and "family" in history_.baseline
        else []
    )
    families = sorted({str(r["family"]) for r in comp_rows if r["family"]})
    common_env, per_input = environment.environment(paths)
    audit_rows = overview.audit_rows(table, unit_of)
    not_measured = sorted(
        table.loc[table["target_verdict"] == V.NOT_MEASURED, "target"].astype(str)
    )
    not_measurable = sorted(
        table.loc[table["target_verdict"] == V.NOT_MEASURABLE, "target"].astype(str)
    )
    trend_entries = _figure_entries(trend_figures, html_dir)
    page_contexts: dict[str, dict[str, Any]] = {
        **suite_pages,
        "history": {"kind": "history", **history.history_page(history_)},
        "environment": {"kind": "environment", "common": common_env, "per_input": per_input},
    }
    if resource_figures:
        page_contexts["resources"] = {
            "kind": "resources",
            "figures": _figure_entries(resource_figures, pages),
        }
    for page in page_contexts.values():
        page.setdefault("kind", "suite")
    nav = [("overview", "Overview")]
    nav += [(s["anchor"], s["title"]) for s in main_sections]
    if sections.get("calibration"):
        nav.append(("calibration", "Calibration"))
    nav += [(b["anchor"], f"Suite {b['name']}") for b in generic]
    nav += [
        ("audit", "Audit"),
        ("history", "History"),
        ("rules", "Rules"),
        ("environment", "Environment"),
    ]
    return {
        "n_rows": len(frame),
        "n_inputs": len(paths),
        "n_summary_rows": len(summary),
        "n_failed": len(failed_ops),
        "failed_by_status": dict(sorted(failed_ops["status"].value_counts().items()))
        if len(failed_ops)
        else {},
        "by_design_by_status": dict(sorted(by_design["status"].value_counts().items()))
        if len(by_design)
        else {},
        "statistics": statistics,
        "counts": overview.verdict_counts(verdicts, history_.baseline, history_.regressions),
        "overview": view,
        "overall": dict(overall),
        "overall_line": overview.overall_line(overall, not_measured, not_measurable),
        "rules": overview.rule_statements(statistics, families, baseline_families, history_.run),
        "main_sections": main_sections,
        "suites": generic,
        "all_blocks": [blocks[s] for s in suite_names],
        "sections": sections,
        "calibration": sections.get("calibration"),
        "comparisons": list(comp_rows),
        "targets": list(target_rows),
        "unassigned_targets": [r for r in target_rows if not r["suite"]],
        "audit": audit_rows,
        "history": history.history_section(history_, trend_entries, all_trends=all_trends),
        "environment": [(k, v) for k, v in common_env if not k.startswith("package ")],
        "packages": [(k, v) for k, v in common_env if k.startswith("package ")],
        "pages": page_contexts,
        "nav": nav,
        "resource_page": _page_href("resources") if resource_figures else None,
        "not_run": [_not_run_row(e) for e in not_run],
    }


def _not_run_row(e: Mapping[str, Any]) -> dict[str, Any]:
    """A missing table as the pages show it: its last good copy linked from index.html
    (the archive lies beside report/ under results/)."""
    return {**e, "last_good_href": f"../{e['last_good']}" if e.get("last_good") else None}
