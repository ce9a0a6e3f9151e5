"""The gate: a verdict a CI job can act on, from the tables a run wrote.

The rule (also in the README):

* a **regression** against the history or the baseline run fails the gate, a
  **suspected regression** (the current run alone, not yet confirmed) too, unless
  ``--allow-suspected``;
* a **failure** fails it: a comparison or history metric whose verdict is "failed";
* a **target** fails it only where config marks it ``gate: true`` and its verdict is
  "not met" (or, with ``--strict-targets``, anything but "met" and "not measurable at this
  budget");
* a within-run comparison (two designs of one run) fails it only with ``gate: true``
  and a regression or failure;
* a **table the run did not produce** (its job failed, or a job it needs did:
  results/summary/not_run.json, written by the report) fails it;
* a verdict flagged ``noisy`` (made while other processes loaded the machine) is shown
  but does not fail the gate unless ``--fail-on-noisy``.

Everything else (improvements, no change, inconclusive, not measured) passes and is
counted. The gate reads stored tables only; it never reruns a benchmark.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.stats import vocabulary as V

#: Verdicts of a metric over the history / against the baseline that fail the gate.
_REGRESSIONS = (V.REGRESSION, V.SUSPECTED_REGRESSION)


@dataclass(frozen=True)
class GateItem:
    """One verdict the gate looked at."""

    source: str  # "target", "comparison", "history", "baseline"
    name: str
    verdict: str
    detail: str
    fails: bool
    noisy: bool = False


@dataclass
class GateResult:
    """What the gate decided and why."""

    items: list[GateItem] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)

    @property
    def failing(self) -> list[GateItem]:
        return [i for i in self.items if i.fails]

    @property
    def passed(self) -> bool:
        return not self.failing

    def exit_code(self) -> int:
        """0 when the gate passes, 1 when any item fails it."""
        return 0 if self.passed else 1


def _read(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    return pd.read_parquet(path)


def _pct(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return f"{v * 100:+.1f}%" if math.isfinite(v) else "—"


def _interval(row: Mapping[str, Any]) -> str:
    ci = row.get("improvement_ci")
    if ci is None or (isinstance(ci, float) and math.isnan(ci)):
        return ""
    lo, hi = list(ci)[:2]
    return f" [{_pct(lo)}, {_pct(hi)}]"


def _noisy(row: Mapping[str, Any]) -> bool:
    value = row.get("noisy")
    return bool(value) if value is not None and not pd.isna(value) else False


def _targets(verdicts: pd.DataFrame, strict: bool) -> Iterable[GateItem]:
    for row in verdicts[verdicts["kind"] == "target"].to_dict("records"):
        gated = bool(row.get("gate")) if not pd.isna(row.get("gate", False)) else False
        verdict = str(row["verdict"])
        bad = verdict == V.NOT_MET or (
            strict and verdict not in (V.MET, V.NOT_MEASURABLE, V.NOT_MEASURED)
        )
        estimate = row.get("estimate")
        lo, hi = row.get("ci_low"), row.get("ci_high")
        detail = (
            f"{row.get('statistic')} {row.get('op')} {row.get('threshold')}: estimate "
            f"{_num(estimate)} [{_num(lo)}, {_num(hi)}]"
        )
        yield GateItem("target", str(row["name"]), verdict, detail, gated and bad, _noisy(row))


def _num(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return f"{v:.4g}" if math.isfinite(v) else "—"


def _comparisons(verdicts: pd.DataFrame) -> Iterable[GateItem]:
    for row in verdicts[verdicts["kind"] == "comparison"].to_dict("records"):
        gated = bool(row.get("gate")) if not pd.isna(row.get("gate", False)) else False
        verdict = str(row["verdict"])
        detail = f"improvement {_pct(row.get('improvement'))}{_interval(row)}"
        if verdict == V.FAILED:
            detail = str(row.get("reason", ""))[:200]
        fails = gated and verdict in (V.REGRESSION, V.FAILED)
        yield GateItem("comparison", str(row["name"]), verdict, detail, fails, _noisy(row))


def _metric_name(row: Mapping[str, Any]) -> str:
    return f"{row.get('suite')}/{row.get('benchmark')} {row.get('case')} {row.get('metric')}"


def _metrics(table: pd.DataFrame, source: str, allow_suspected: bool) -> Iterable[GateItem]:
    for row in table.to_dict("records"):
        verdict = str(row.get("verdict"))
        if verdict not in (*_REGRESSIONS, V.FAILED):
            yield GateItem(source, _metric_name(row), verdict, "", False, _noisy(row))
            continue
        fails = not (allow_suspected and verdict == V.SUSPECTED_REGRESSION)
        detail = f"improvement {_pct(row.get('improvement'))}{_interval(row)}"
        if verdict == V.FAILED:
            detail = str(row.get("reason", ""))[:200]
        yield GateItem(source, _metric_name(row), verdict, detail, fails, _noisy(row))


def _not_run(summary: Path) -> Iterable[GateItem]:
    """A table missing from the run: its job failed; the log says why."""
    from forgebench.report.not_run import NOT_RUN_FILE, read_not_run

    for e in read_not_run(summary / NOT_RUN_FILE):
        detail = f"log {e['log']}" if e.get("log") else ""
        yield GateItem("job", str(e["table"]), str(e["status"]), detail, True)


def evaluate(
    results: str | Path,
    *,
    allow_suspected: bool = False,
    strict_targets: bool = False,
    fail_on_noisy: bool = False,
) -> GateResult:
    """The gate over ``results/summary/``: verdicts, baseline comparison, regressions."""
    summary = Path(results) / "summary"
    verdicts = _read(summary / "verdicts.parquet")
    if verdicts is None:
        raise ForgebenchError(
            f"{summary / 'verdicts.parquet'} is missing: run the workflow (or `forgebench "
            "report`) first; the gate reads a run's verdicts, it does not run benchmarks"
        )
    out = GateResult(inputs=[str(summary / "verdicts.parquet")])
    if len(verdicts) and "kind" in verdicts:
        out.items += list(_targets(verdicts, strict_targets))
        out.items += list(_comparisons(verdicts))
    out.items += list(_not_run(summary))
    regressions = _read(summary / "regressions.parquet")
    if regressions is not None and len(regressions):
        out.inputs.append(str(summary / "regressions.parquet"))
        out.items += list(_metrics(regressions, "history", allow_suspected))
    else:
        baseline = _read(summary / "baseline_comparison.parquet")
        if baseline is not None and len(baseline):
            out.inputs.append(str(summary / "baseline_comparison.parquet"))
            out.items += list(_metrics(baseline, "baseline", allow_suspected))
    if not fail_on_noisy:
        out.items = [
            GateItem(i.source, i.name, i.verdict, i.detail + " (noisy)", False, True)
            if i.fails and i.noisy
            else i
            for i in out.items
        ]
    return out


def format_result(
    result: GateResult, *, report_path: str | None = None, limit: int = 30
) -> list[str]:
    """The terminal summary: what fails the gate, by name, then counts; a few dozen lines."""
    lines = []
    failing = result.failing
    head = "GATE PASSED" if result.passed else f"GATE FAILED: {len(failing)} verdict(s)"
    lines.append(head)
    for item in failing[:limit]:
        lines.append(f"  {item.source:<10} {item.verdict:<20} {item.name}  {item.detail}".rstrip())
    if len(failing) > limit:
        lines.append(f"  ... and {len(failing) - limit} more (summary.json lists them all)")
    counts: dict[str, dict[str, int]] = {}
    for item in result.items:
        by = counts.setdefault(item.source, {})
        by[item.verdict] = by.get(item.verdict, 0) + 1
    for source, by in sorted(counts.items()):
        parts = ", ".join(f"{n} {v}" for v, n in sorted(by.items()))
        lines.append(f"{source}: {parts}")
    noisy = [i for i in result.items if i.noisy and i.verdict in (*_REGRESSIONS, V.FAILED)]
    if noisy:
        lines.append(
            f"{len(noisy)} regression/failure verdict(s) made under load (noisy): shown, not gating"
        )
    if report_path:
        lines.append(f"report: {report_path}")
    return lines


def junit_xml(result: GateResult) -> str:
    """The gate as JUnit XML: one test case per verdict, a failure per failing one."""
    suite = ET.Element(
        "testsuite",
        name="forgebench gate",
        tests=str(len(result.items)),
        failures=str(len(result.failing)),
    )
    for item in result.items:
        case = ET.SubElement(
            suite, "testcase", classname=f"forgebench.{item.source}", name=item.name
        )
        if item.fails:
            failure = ET.SubElement(case, "failure", message=item.verdict)
            failure.text = item.detail
        elif item.verdict in (V.INCONCLUSIVE, V.NOT_MEASURED, V.NOT_MEASURABLE, V.UNDETERMINED):
            ET.SubElement(case, "skipped", message=item.verdict)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def workflow_summary(results: str | Path = "results", *, job_failed: bool = False) -> list[str]:
    """The lines the workflow prints when it ends: the gate's view of the run and where
    the report is; nothing when the run wrote no verdicts (a partial target)."""
    try:
        result = evaluate(results)
    except ForgebenchError:
        return []
    except Exception as exc:  # unreadable tables must never fail the workflow's ending
        return [f"gate: the verdict tables could not be read ({type(exc).__name__}: {exc})"]
    report = Path(results, "report", "index.html")  # absolute: a path to open or click
    lines = format_result(result, report_path=str(report.resolve()) if report.exists() else None)
    lines.append(
        "(`forgebench gate` turns this into an exit code for CI; the workflow exits "
        + ("1: a job failed)" if job_failed else "0)")
    )
    return lines
