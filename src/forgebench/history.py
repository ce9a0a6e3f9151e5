"""Run history: every run stored once under results/history/, baselines and regressions.

Layout, one directory per run, partitioned by run id and never rewritten::

    results/history/run_id=<id>/measurements.parquet   every raw row of the run (forgebench.record)
    results/history/run_id=<id>/metrics.parquet        per metric: ok/failed counts and median
    results/history/run_id=<id>/resources/<suite>.<benchmark>.parquet   sampler tables
    results/history/run_id=<id>/provenance.json        each raw file's provenance, run start

The run id hashes the measurement rows (values, statuses, timestamps: everything a row
holds), not file bytes or modification times, so rewriting the same results, or listing
them in another order, gives the same id, and appending a run twice adds nothing. A run
is written into a hidden temporary directory beside the others and renamed into place,
so a reader sees a whole run or none.

Comparisons against a baseline run go through forgebench.stats (compare_family, with
failures judged against the error budget); regression detection over the history through
forgebench.stats.detection (steps, drift and spikes, suspected versus confirmed; the
earlier change-point and rolling z-score methods stay available as history.method).
Nothing here decides a verdict on its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from forgebench import record, stats
from forgebench.atomic import write_text_atomic
from forgebench.errors import ForgebenchError
from forgebench.stats import detection as stats_detection
from forgebench.stats import vocabulary as V

log = logging.getLogger(__name__)

PARTITION = "run_id="
MEASUREMENTS = "measurements.parquet"
METRICS = "metrics.parquet"
PROVENANCE = "provenance.json"
RESOURCES = "resources"
#: Hex digits of the run id: 64 bits, so two different runs collide with odds ~1e-19.
RUN_ID_LENGTH = 16

RUN_COLUMNS = ["run_id", "started_at", "host", "cpu_model", "git_commit", "n_rows"]
METRIC_KEYS = [
    "suite",
    "benchmark",
    "benchmark_version",
    "case",
    "params",
    "metric",
    "unit",
    "higher_is_better",
]
#: ``se_log_median``: the standard error of the log of ``median`` within the run (NaN where
#: the values are not all positive, and in runs stored before it was recorded); the
#: history's noise estimate never goes below the runs' own.
METRIC_COLUMNS = [
    *METRIC_KEYS,
    "n_ok",
    "n_failed",
    "median",
    "se_log_median",
    "host",
    "cpu_model",
]
COMPARISON_KEYS = ["suite", "benchmark", "case", "metric"]
#: One row per metric of the current run. ``change_began_at``/``change_confirmed_at``: the
#: run ids where the change the row speaks of began and was confirmed (None while it is
#: only suspected); ``new``: that change was confirmed, extended or suspected at the
#: current run, so the verdict is about it; otherwise the verdict is "no change" since it.
#: ``change_points``: the first run of every change found in the series (JSON list).
REGRESSION_COLUMNS = [
    "suite",
    "benchmark",
    "case",
    "params",
    "metric",
    "unit",
    "higher_is_better",
    "method",
    "n_runs",
    "n_excluded",
    "runs",
    "change_points",
    "change_at",
    "change_began_at",
    "change_confirmed_at",
    "change_kind",
    "confirmed",
    "new",
    "at_current_run",
    "level_before",
    "level_current",
    "improvement",
    "p_value",
    "statistic_name",
    "statistic",
    "critical_value",
    "sigma",
    "threshold",
    "verdict",
    "reason",
]

NOT_COMPARABLE = "not comparable"
PAIRWISE_METHOD = "pairwise against the baseline"
COMPARABILITY_RULE = (
    "A metric of two runs is compared only if its benchmark version, its workload "
    "parameters and the machine (host and CPU model) are equal on both sides; otherwise "
    "it is 'not comparable'. Machine and version differences are crossed only on request "
    "(history.cross_machine / history.cross_version, or --cross-machine / --cross-version), "
    "and a crossed comparison says so in its reason."
)
FAMILY_RULE = (
    "Each metric against the baseline run: the interval of the ratio of typical values "
    "against the practical threshold (statistics.practical_threshold, or the metric's "
    "entry in statistics.metric_thresholds), with Benjamini-Hochberg across each family "
    "(the metrics of one suite). One run a side holds no run-to-run variation, so a change "
    "between two runs reads 'suspected'; failures beyond the error budget read 'failed'."
)
STEP_AND_DRIFT_METHOD = "step-and-drift"
#: history.method: the default and the two earlier methods, kept for comparison.
HISTORY_METHODS = (STEP_AND_DRIFT_METHOD, stats.CHANGE_POINT_METHOD, stats.ROLLING_Z_METHOD)
HISTORY_RULE = (
    "With enough comparable runs of a metric (history.min_runs, and at least "
    f"{stats_detection.MIN_BEFORE + 3} to confirm a change; same version, parameters and "
    "machine, no failed operations), the history decides (history.method, default "
    "step-and-drift: forgebench.stats.detection on the log of per-run medians). The newest "
    "run(s) off the level read 'suspected regression/improvement' until the next two runs "
    "confirm the change or go back (a spike, rejected). A confirmed change beyond the "
    "practical threshold is a regression or improvement, within it a 'shift below "
    "threshold'; it is reported once, at the run where it began, and read as new only at "
    "the run that confirms it: later rows say 'no change' since it. A steady drift is one "
    "change, found as a trend. New changes go through Benjamini-Hochberg across the metrics "
    "of one suite. With fewer runs, the metric is compared pairwise against the baseline "
    "run. Each row names its method."
)

# ------------------------------------------------------------------------- run id


def _column_key(series: pd.Series) -> tuple[np.ndarray, bytes]:
    """A column as a sortable integer/float array plus the bytes that complete it.

    Strings become codes into their sorted distinct values (stored once, with Arrow's
    unambiguous offsets layout), so rows sort and hash as numbers. Floats get one NaN bit
    pattern and +0.0 for -0.0, so equal values give equal bytes.
    """
    if series.dtype == bool:
        return series.to_numpy(dtype=np.uint8), b""
    if pd.api.types.is_datetime64_any_dtype(series):
        micros = series.dt.tz_convert("UTC").astype("datetime64[us, UTC]").astype("int64")
        return micros.to_numpy(dtype="<i8"), b""
    if pd.api.types.is_integer_dtype(series):
        return series.to_numpy(dtype="<i8"), b""
    if pd.api.types.is_float_dtype(series):
        values = series.to_numpy(dtype="<f8") + 0.0
        return np.where(np.isnan(values), np.nan, values).astype("<f8"), b""
    codes, uniques = pd.factorize(series.astype(str), sort=True)
    arr = pa.array(list(uniques), type=pa.large_string())
    _, offsets, data = arr.buffers()
    return codes.astype("<i8"), offsets.to_pybytes() + (b"" if data is None else data.to_pybytes())


def _digest(rows: pd.DataFrame) -> str:
    """sha256 over validated measurement rows, independent of their order (see run_id_of)."""
    keys = {col: _column_key(rows[col].reset_index(drop=True)) for col in record.COLUMNS}
    order = np.lexsort([keys[col][0] for col in reversed(record.COLUMNS)])  # first col primary
    digest = hashlib.sha256(f"forgebench record v{record.SCHEMA_VERSION}\n".encode())
    digest.update(f"{len(rows)} rows\n".encode())
    for col in record.COLUMNS:
        array, extra = keys[col]
        for chunk in (col.encode(), extra, array[order].tobytes()):
            digest.update(len(chunk).to_bytes(8, "little"))
            digest.update(chunk)
    return digest.hexdigest()[:RUN_ID_LENGTH]


def run_id_of(frame: pd.DataFrame) -> str:
    """The run id of a set of measurement rows: sha256 over the rows sorted by every
    column, column by column, so row order and file layout do not matter."""
    return _digest(record.validate_measurements(frame))


def _read_raw(raw_paths: Iterable[str | os.PathLike[str]]) -> tuple[pd.DataFrame, list[dict]]:
    """Every raw measurement file's rows (in sorted path order) and a description of each."""
    paths = sorted({str(p) for p in raw_paths})
    if not paths:
        raise ForgebenchError(
            "no raw measurement files given: a run needs at least one results/raw/<suite>/"
            "<benchmark>.parquet; enable a benchmark under suites: and run the workflow"
        )
    frames, files = [], []
    for path in paths:
        frame = record.read_measurements(path)
        prov = record.read_provenance(path)
        pairs = frame[["suite", "benchmark"]].drop_duplicates().itertuples(index=False)
        names = {f"{s}/{b}" for s, b in pairs}
        declared = prov.get("benchmark") or {}
        if declared.get("suite") and declared.get("name"):  # also a file without rows
            names.add(f"{declared['suite']}/{declared['name']}")
        files.append(
            {
                "path": _relative_to_results(path),
                "benchmarks": sorted(names),
                "benchmark_versions": sorted(int(v) for v in frame["benchmark_version"].unique()),
                "n_rows": len(frame),
                "n_failed": int((frame["status"] != "ok").sum()),
                "provenance": prov,
                "_source": path,
            }
        )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), files


def run_id(raw_paths: Iterable[str | os.PathLike[str]]) -> str:
    """The run id of the raw measurement files: a short hex hash of their rows' content.

    Stable when the files are rewritten with the same rows, in any row or file order;
    different as soon as any value, status, timestamp or other field of a row differs.
    """
    frame, _ = _read_raw(raw_paths)
    return _digest(frame)  # read_measurements validated the rows


def _relative_to_results(path: str) -> str:
    """``.../raw/<suite>/<file>`` as ``raw/<suite>/<file>``: the same wherever results live."""
    parts = Path(path).parts
    if "raw" not in parts:
        return Path(path).as_posix()
    return Path(*parts[len(parts) - 1 - parts[::-1].index("raw") :]).as_posix()


# ------------------------------------------------------------------------- storage


def _common(values: Iterable[Any]) -> str | None:
    """The one value all files agree on, or the distinct values joined (a mixed run)."""
    distinct = sorted({str(v) for v in values if v is not None})
    return ", ".join(distinct) if distinct else None


def _machine(files: Sequence[Mapping[str, Any]], suite: str, benchmark: str) -> dict[str, Any]:
    """Host and CPU model of the file that holds ``suite/benchmark``."""
    for entry in files:
        if f"{suite}/{benchmark}" in entry.get("benchmarks", []):
            prov = entry.get("provenance", {})
            return {"host": prov.get("host"), "cpu_model": prov.get("cpu_model")}
    return {"host": None, "cpu_model": None}


def run_metrics(frame: pd.DataFrame, files: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per metric of one run: successful and failed non-warm-up counts and the median of
    the successful values (NaN if none), with the machine it ran on. What the history's
    regression detection reads, so it need not load every raw row of every run."""
    measured = frame[~frame["warmup"]]
    if measured.empty:
        return pd.DataFrame({c: [] for c in METRIC_COLUMNS})
    ok = measured["status"] == "ok"
    failure = measured["status"].map(V.is_failure).astype(bool)
    table = (
        measured.assign(_ok=ok, _failed=failure, _value=measured["value"].where(ok))
        .groupby(METRIC_KEYS, sort=True, dropna=False)
        .agg(n_ok=("_ok", "sum"), n_failed=("_failed", "sum"), median=("_value", "median"))
        .reset_index()
    )
    # by-design rows (skipped, unavailable, censored) are neither values nor failures
    table["n_ok"] = table["n_ok"].astype("int64")
    table["n_failed"] = table["n_failed"].astype("int64")
    table["se_log_median"] = _se_log_medians(measured[ok], table)
    machines = [
        _machine(files, s, b) for s, b in zip(table["suite"], table["benchmark"], strict=True)
    ]
    table["host"] = [m["host"] for m in machines]
    table["cpu_model"] = [m["cpu_model"] for m in machines]
    return table[METRIC_COLUMNS]


def _se_log_medians(ok_rows: pd.DataFrame, table: pd.DataFrame) -> np.ndarray:
    """Per row of ``table``: the standard error of the log median of its successful values
    (1.253 robust SDs over sqrt(n), the SD from the MAD); NaN below 3 values or where a
    value is not positive."""
    out = np.full(len(table), math.nan)
    groups = ok_rows.groupby(METRIC_KEYS, sort=True, dropna=False)["value"]
    position = {key: i for i, key in enumerate(table[METRIC_KEYS].itertuples(index=False))}
    for key, values in groups:
        v = values.to_numpy(dtype=float)
        if v.size < 3 or not (v > 0).all():
            continue
        logs = np.log(v)
        sd = 1.482602218505602 * float(np.median(np.abs(logs - np.median(logs))))
        i = position.get(tuple(key))
        if i is not None:
            out[i] = 1.2533 * sd / math.sqrt(v.size)
    return out


def _run_dir(history_root: str | os.PathLike[str], rid: str) -> Path:
    return Path(history_root) / f"{PARTITION}{rid}"


def append_run(
    raw_paths: Iterable[str | os.PathLike[str]], history_root: str | os.PathLike[str]
) -> str:
    """Store the run made of ``raw_paths`` under ``history_root/run_id=<id>/``; return its id.

    Does nothing if that run is already stored (the id hashes the rows, so an unchanged
    run has the same id): an existing run is never overwritten. The run is written into a
    hidden temporary directory beside the others and renamed into place, so an
    interrupted append leaves no partial run behind (at most a hidden ``.run_id=*``
    directory, which every reader ignores). The measurement rows go through
    forgebench.record; resource tables found beside the raw files are kept too.
    """
    frame, files = _read_raw(raw_paths)
    rid = _digest(frame)
    root = Path(history_root)
    final = _run_dir(root, rid)
    if final.exists():
        log.info("run %s is already in %s: nothing to add", rid, root)
        return rid
    root.mkdir(parents=True, exist_ok=True)
    # A run's time is when it was made (appended), not its oldest row: a partial rerun
    # reuses older tables, whose rows keep their old times.
    made = pd.Timestamp.now(tz="UTC")
    earliest = frame["started_at"].min() if len(frame) else None
    newest = frame["started_at"].max() if len(frame) else None
    provenance = {
        "run_id": rid,
        "started_at": made.isoformat(),
        "made_at": made.isoformat(),
        "earliest_row_at": None if earliest is None else earliest.isoformat(),
        "newest_row_at": None if newest is None else newest.isoformat(),
        "n_rows": len(frame),
        "n_failed": int((frame["status"] != "ok").sum()),
        "host": _common(f["provenance"].get("host") for f in files),
        "cpu_model": _common(f["provenance"].get("cpu_model") for f in files),
        "git_commit": _common(f["provenance"].get("git_commit") for f in files),
        "files": [{k: v for k, v in f.items() if k != "_source"} for f in files],
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{PARTITION}{rid}.", suffix=".tmp", dir=root))
    try:
        summary = {k: v for k, v in provenance.items() if k != "files"}
        record.write_measurements(frame, tmp / MEASUREMENTS, summary)
        record.write_derived_table(
            run_metrics(frame, files), tmp / METRICS, {"kind": "run metrics", **summary}
        )
        for entry in files:
            source = entry["_source"]
            resources = Path(source[: -len(".parquet")] + ".resources.parquet")
            if resources.exists():
                name = "+".join(b.replace("/", ".") for b in entry["benchmarks"]) or "empty"
                record.write_resources(
                    record.read_resources(resources),
                    tmp / RESOURCES / f"{name}.parquet",
                    record.read_provenance(resources),
                )
        write_text_atomic(
            tmp / PROVENANCE, json.dumps(provenance, indent=2, sort_keys=True, default=str) + "\n"
        )
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; history is shared
        if final.exists():  # appended meanwhile by another process: keep theirs
            shutil.rmtree(tmp)
            return rid
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if final.exists():  # lost a race against a concurrent append of the same run
            return rid
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("appended run %s (%d rows, %d files) to %s", rid, len(frame), len(files), root)
    return rid


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _run_dirs(history_root: str | os.PathLike[str]) -> list[Path]:
    root = Path(history_root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob(f"{PARTITION}*") if p.is_dir())


def read_provenance(history_root: str | os.PathLike[str], rid: str) -> dict[str, Any]:
    """The stored provenance.json of one run."""
    path = _run_dir(history_root, rid) / PROVENANCE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ForgebenchError(f"{path} is missing: {path.parent} is not a stored run") from None


def list_runs(history_root: str | os.PathLike[str]) -> pd.DataFrame:
    """Every stored run, oldest first, one row each. ``started_at`` is when the run was
    made (provenance ``made_at``); runs stored before that was recorded take their newest
    row's time, which a partial rerun moves forward too. Ties fall back to the run id."""
    rows = []
    for run_dir in _run_dirs(history_root):
        prov = read_provenance(history_root, run_dir.name[len(PARTITION) :])
        row = {c: prov.get(c) for c in RUN_COLUMNS}
        row["started_at"] = prov.get("made_at") or _newest_row_at(run_dir)
        rows.append(row)
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    runs["started_at"] = pd.to_datetime(runs["started_at"], utc=True)
    runs["n_rows"] = runs["n_rows"].astype("int64")
    return runs.sort_values(["started_at", "run_id"], kind="mergesort").reset_index(drop=True)


def _newest_row_at(run_dir: Path) -> str | None:
    """The newest row time of a run stored before ``made_at`` existed."""
    path = run_dir / MEASUREMENTS
    if not path.is_file():
        return None
    times = pq.read_table(path, columns=["started_at"]).column("started_at").to_pandas()
    return None if times.empty else pd.Timestamp(times.max()).isoformat()


def resolve_run(history_root: str | os.PathLike[str], ref: str) -> str:
    """A run id from a full id, a unique prefix, ``latest`` or ``previous`` (latest but one)."""
    runs = list_runs(history_root)
    ids = list(runs["run_id"])
    if not ids:
        raise ForgebenchError(
            f"no runs stored under {history_root}; run the workflow to add one "
            "(each run is appended to results/history/)"
        )
    if ref in ("latest", "previous"):
        position = -1 if ref == "latest" else -2
        if len(ids) < -position:
            raise ForgebenchError(f"{ref!r}: only {len(ids)} run(s) under {history_root}")
        return ids[position]
    matches = [i for i in ids if i.startswith(ref)] if ref else []
    if len(matches) == 1:
        return matches[0]
    what = "matches several runs" if matches else "matches no run"
    raise ForgebenchError(
        f"run {ref!r} {what} under {history_root}; give a run id (or a unique prefix), "
        f"'latest' or 'previous'. Stored runs: {', '.join(ids)}"
    )


def load_run(history_root: str | os.PathLike[str], rid: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One stored run: its measurement rows (validated by forgebench.record) and provenance."""
    path = _run_dir(history_root, rid) / MEASUREMENTS
    if not path.exists():
        raise ForgebenchError(
            f"run {rid!r} is not stored under {history_root} ({path} missing); "
            "`forgebench history` lists the stored runs"
        )
    return record.read_measurements(path), read_provenance(history_root, rid)


def load_metrics(history_root: str | os.PathLike[str]) -> pd.DataFrame:
    """The per-run metric table of every stored run, with run_id and started_at."""
    runs = list_runs(history_root)
    frames = []
    for rid, started in zip(runs["run_id"], runs["started_at"], strict=True):
        table = pq.read_table(_run_dir(history_root, rid) / METRICS).to_pandas()
        frames.append(table.assign(run_id=rid, started_at=started))
    if not frames:
        return pd.DataFrame({c: [] for c in ["run_id", "started_at", *METRIC_COLUMNS]})
    return pd.concat(frames, ignore_index=True)


def select_baseline(runs: pd.DataFrame, current_id: str, baseline: str = "previous") -> str | None:
    """The baseline of ``current_id``: the named run, or for ``"previous"`` the latest run
    stored before it (None when it is the first). Order is started_at, then run id."""
    ids = list(runs["run_id"])
    if baseline == "previous":
        if current_id not in ids:
            return ids[-1] if ids else None
        position = ids.index(current_id)
        return ids[position - 1] if position > 0 else None
    matches = [i for i in ids if i.startswith(str(baseline))]
    if len(matches) != 1:
        raise ForgebenchError(
            f"history.baseline: {baseline!r} {'is ambiguous' if matches else 'is not a stored run'}"
            f"; allowed: 'previous' or one of {ids}"
        )
    if matches[0] == current_id:
        raise ForgebenchError(
            f"history.baseline: {baseline!r} is this run itself; name an earlier run or 'previous'"
        )
    return matches[0]


# -------------------------------------------------------------------- comparisons


def metric_threshold(
    statistics: Mapping[str, Any], suite: str, benchmark: str, metric: str
) -> float:
    """The practical threshold of one metric (stats.Settings.threshold): its
    ``statistics.metric_thresholds`` entry, else ``statistics.practical_threshold``."""
    return stats.Settings.from_config(_settings_cfg(statistics)).threshold(suite, benchmark, metric)


def _settings_cfg(statistics: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a ``statistics:`` section that stats.Settings knows."""
    known = set(stats.Settings().describe()) | {"bootstrap_resamples"}
    return {k: v for k, v in statistics.items() if k in known}


def _empty_comparison(n_baseline: int, n_candidate: int, threshold: float) -> dict[str, Any]:
    out: dict[str, Any] = {f.name: math.nan for f in dataclasses.fields(stats.Comparison)}
    out.update(
        n_baseline=n_baseline,
        n_candidate=n_candidate,
        improvement_ci=(math.nan, math.nan),
        speedup_ci=(math.nan, math.nan),
        ratio_ci=(math.nan, math.nan),
        failure_rate_candidate_ci=(math.nan, math.nan),
        significant=False,
        method="none",
        design="none",
        threshold=threshold,
    )
    return out


def _sides(rows: pd.DataFrame) -> dict[tuple, dict[str, Any]]:
    """Per (suite, benchmark, case, metric): successful non-warm-up values with their
    repetition labels, the failure count (errors, timeouts, mismatches; not by-design
    rows), benchmark versions, parameter sets, unit and direction (numpy per group)."""
    if rows.empty:
        return {}
    value = rows["value"].to_numpy()
    measured = ~rows["warmup"].to_numpy()
    ok = (rows["status"] == "ok").to_numpy()
    failure = rows["status"].map(V.is_failure).to_numpy(dtype=bool)
    repetition = rows["repetition"].to_numpy()
    version = rows["benchmark_version"].to_numpy()
    params = rows["params"].to_numpy()
    unit = rows["unit"].to_numpy()
    higher = rows["higher_is_better"].to_numpy()
    out = {}
    for key, idx in rows.groupby(COMPARISON_KEYS, sort=True).indices.items():
        used = idx[measured[idx]]
        good = used[ok[used]]
        out[key] = {
            "values": value[good],
            "units": repetition[good],
            "n_failed": int(failure[used].sum()),
            "versions": sorted({int(v) for v in version[idx]}),
            "params": sorted(set(params[idx])),
            "unit": unit[idx[0]],
            "higher_is_better": bool(higher[idx[0]]),
        }
    return out


def _foreign_loads(rows: pd.DataFrame) -> dict[tuple[str, str], float]:
    """Per (suite, benchmark): other processes' CPU during its job (its job row)."""
    sel = rows[(rows["metric"] == "foreign_cpu_percent") & (rows["status"] == "ok")]
    sel = sel[sel["case"].astype(str).str.startswith("job")]
    return {k: float(v) for k, v in sel.groupby(["suite", "benchmark"])["value"].max().items()}


def _unit_labels(base: Mapping[str, Any], cur: Mapping[str, Any]) -> tuple[Any, Any]:
    """Repetition labels when either side has several repetitions, else None (rows)."""
    several = len(set(base["units"].tolist())) > 1 or len(set(cur["units"].tolist())) > 1
    return (base["units"], cur["units"]) if several else (None, None)


#: A change between two single runs rests on within-run noise only: it stays suspected
#: until the history's detection sees it persist (docs/verdicts.md).
_SUSPECTED = {V.REGRESSION: V.SUSPECTED_REGRESSION, V.IMPROVEMENT: V.SUSPECTED_IMPROVEMENT}


def compare_runs(
    current_rows: pd.DataFrame,
    baseline_rows: pd.DataFrame,
    current_prov: Mapping[str, Any],
    baseline_prov: Mapping[str, Any],
    statistics_cfg: Mapping[str, Any],
    *,
    seed: int,
    cross_machine: bool = False,
    cross_version: bool = False,
) -> pd.DataFrame:
    """Each metric of the current run against the baseline run, through stats.compare_family.

    One row per (suite, benchmark, case, metric) present in both runs, sorted. A metric
    whose benchmark version, workload parameters or machine (host or CPU model, from the
    raw file's provenance) differ is "not comparable", with the reason, unless
    ``cross_machine``/``cross_version`` allow that difference. Otherwise the same rule as
    within a run (analysis.compare_cases): repetitions as units where a case has several,
    failures against the error budget, one family per suite. Two single runs cannot
    separate a change from run-to-run variation, so an improvement or regression between
    them reads "suspected"; the history's detection confirms it over the next runs. A
    metric whose job ran under other processes' load is flagged ``noisy``.
    """
    del seed  # nothing is drawn: every interval is exact or distribution-free
    settings = stats.Settings.from_config(_settings_cfg(statistics_cfg))
    base_id = str(baseline_prov.get("run_id", "baseline"))
    cand_id = str(current_prov.get("run_id", "current"))
    cur_groups, base_groups = _sides(current_rows), _sides(baseline_rows)
    loads_cur, loads_base = _foreign_loads(current_rows), _foreign_loads(baseline_rows)
    rows: list[dict[str, Any]] = []
    members: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for key in sorted(set(cur_groups) & set(base_groups)):
        suite, benchmark, _, metric = key
        cur, base = cur_groups[key], base_groups[key]
        threshold = settings.threshold(suite, benchmark, metric)
        m_cur = _machine(current_prov.get("files", []), suite, benchmark)
        m_base = _machine(baseline_prov.get("files", []), suite, benchmark)
        loads = [x for x in (loads_cur.get(key[:2]), loads_base.get(key[:2])) if x is not None]
        row: dict[str, Any] = dict(zip(COMPARISON_KEYS, key, strict=True))
        row.update(
            unit=cur["unit"],
            family=f"{suite} (vs baseline {base_id})",
            baseline_run=base_id,
            candidate_run=cand_id,
            benchmark_version_baseline=base["versions"][0],
            benchmark_version_candidate=cur["versions"][0],
            host_baseline=m_base["host"],
            host_candidate=m_cur["host"],
            cpu_model_baseline=m_base["cpu_model"],
            cpu_model_candidate=m_cur["cpu_model"],
            n_failed_baseline=base["n_failed"],
            n_failed_candidate=cur["n_failed"],
            foreign_cpu_percent=max(loads) if loads else None,
            noisy=bool(loads and max(loads) > settings.noisy_foreign_cpu_percent),
        )
        blockers, crossed = [], []
        if base["versions"] != cur["versions"]:
            text = f"benchmark version {base['versions']} vs {cur['versions']}"
            (crossed if cross_version else blockers).append(text)
        if base["params"] != cur["params"]:
            blockers.append("the workload parameters differ (not the same work)")
        if m_base != m_cur:
            text = (
                f"machine {m_base['host']} ({m_base['cpu_model']}) vs "
                f"{m_cur['host']} ({m_cur['cpu_model']})"
            )
            (crossed if cross_machine else blockers).append(text)
        row["crossed"] = "; ".join(crossed)
        if blockers:
            row.update(_empty_comparison(len(base["values"]), len(cur["values"]), threshold))
            row.update(
                higher_is_better=cur["higher_is_better"],
                alpha=settings.alpha,
                confidence=settings.confidence,
                verdict=NOT_COMPARABLE,
                reason="not comparable: " + "; ".join(blockers),
            )
            rows.append(row)
            continue
        b_units, c_units = _unit_labels(base, cur)
        kwargs = {
            "baseline": base["values"],
            "candidate": cur["values"],
            "higher_is_better": cur["higher_is_better"],
            "threshold": threshold,
            "alpha": settings.alpha,
            "baseline_units": b_units,
            "candidate_units": c_units,
            "failures": (base["n_failed"], cur["n_failed"]),
            "error_budget": settings.error_budget,
            "min_units": settings.min_n("comparison"),
        }
        members.setdefault(row["family"], []).append((len(rows), kwargs))
        rows.append(row)
        if crossed:
            row["crossed_note"] = f"crossed on request: {'; '.join(crossed)}"
    for family in sorted(members):
        idx = [i for i, _ in members[family]]
        results = stats.compare_family(
            [kw for _, kw in members[family]], alpha=settings.alpha, confidence=settings.confidence
        )
        for i, result in zip(idx, results, strict=True):
            row = rows[i]
            row.update(result.as_dict())
            if result.verdict in _SUSPECTED:
                row["verdict"] = _SUSPECTED[result.verdict]
                row["reason"] = (
                    f"{result.reason}; one run a side: run-to-run variation is not in this "
                    "interval, so the change is suspected until later runs confirm it"
                )
            note = row.pop("crossed_note", None)
            if note:
                row["reason"] = f"{row['reason']}; {note}"
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=[*COMPARISON_KEYS, "unit", "family", "verdict", "reason"])
    return table


# ------------------------------------------------------------- history detection


def _relative_change(before: float, current: float, higher_is_better: bool) -> float:
    """Signed change, positive = better, as stats.compare defines improvement; NaN where a
    ratio is meaningless (baseline level <= 0 or current level < 0)."""
    if not (math.isfinite(before) and math.isfinite(current)) or before <= 0 or current < 0:
        return math.nan
    ratio = current / before
    return ratio - 1.0 if higher_is_better else 1.0 - ratio


def _previous_level(bounds: Sequence[int], levels: Sequence[float]) -> int:
    """Index of the level the current segment is judged against: the nearest earlier
    segment of two or more runs (a one-run segment between two others is one noisy run,
    not a level), or the segment just before when every earlier one is a single run."""
    for j in range(len(levels) - 2, -1, -1):
        if bounds[j + 1] - bounds[j] >= 2:
            return j
    return len(levels) - 2


def _judge(improvement: float, threshold: float, changed: bool) -> str:
    """The verdict on a detected change (or none): beyond the threshold, or not."""
    if not changed:
        return V.NO_CHANGE
    if not math.isfinite(improvement):
        return V.UNDETERMINED
    if improvement < -threshold:
        return V.REGRESSION
    if improvement > threshold:
        return V.IMPROVEMENT
    return V.SHIFT_BELOW_THRESHOLD


def _no_change_fields() -> dict[str, Any]:
    """The change columns of a row that speaks of no change."""
    return {
        "change_points": "[]",
        "change_at": None,
        "change_began_at": None,
        "change_confirmed_at": None,
        "change_kind": None,
        "confirmed": False,
        "new": False,
        "at_current_run": False,
        "p_value": math.nan,
        "sigma": math.nan,
    }


def _with_run_ids(text: str, run_ids: Sequence[str]) -> str:
    """A detection reason with its run positions ("run 7") as run ids."""
    return re.sub(r"\brun (\d+)\b", lambda m: f"run {run_ids[int(m.group(1))]}", text)


def _detection_verdict(
    values: np.ndarray,
    se: np.ndarray,
    run_ids: Sequence[str],
    *,
    higher_is_better: bool,
    threshold: float,
) -> dict[str, Any]:
    """The step-and-drift verdict on one metric's per-run medians (time order, current
    run last), through forgebench.stats.detection; see HISTORY_RULE."""
    log_scale = bool((values > 0).all())
    back = np.exp if log_scale else (lambda v: v)
    changes, state = stats_detection.analyse(
        values,
        threshold=threshold,
        higher_is_better=higher_is_better,
        se=se if np.isfinite(se).any() else None,
        log_scale=log_scale,
    )
    change = state.change
    scale = "log of per-run medians" if log_scale else "per-run medians (not all positive)"
    out = _no_change_fields()
    out.update(
        method=(
            f"{STEP_AND_DRIFT_METHOD} (step suspected at |z| > {stats_detection.Z_STEP:g}, "
            f"confirmed by CUSUM > {stats_detection.CUSUM_H:g} sigma (k = "
            f"{stats_detection.CUSUM_K:g}) over at least 3 runs; drift |z| > "
            f"{stats_detection.Z_DRIFT:g}; {scale})"
        ),
        change_points=json.dumps([run_ids[c.start] for c in changes if c.confirmed is not None]),
        sigma=state.sigma,
        statistic_name="z",
        statistic=math.nan,
        critical_value=stats_detection.Z_STEP,
        verdict=state.verdict,
        why=_with_run_ids(state.reason, run_ids),
    )
    start = 0 if change is None or change.confirmed is None else change.start
    level = float(np.median(values[start:-1])) if len(values) - start > 1 else math.nan
    out.update(
        level_before=level,
        level_current=float(values[-1]),
        improvement=_relative_change(level, float(values[-1]), higher_is_better),
    )
    if change is None:
        return out
    began = run_ids[change.start]
    out.update(
        change_at=began,
        change_began_at=began,
        change_confirmed_at=None if change.confirmed is None else run_ids[change.confirmed],
        change_kind=change.kind,
        confirmed=change.confirmed is not None,
        new=state.new,
        at_current_run=state.new,
        p_value=state.p_value,
    )
    if state.new:
        out.update(
            level_before=float(back(change.level_before)),
            level_current=float(back(change.level_after)),
            improvement=change.size,
            statistic=change.z,
        )
        if math.isfinite(change.cusum):
            out.update(
                statistic_name="cusum",
                statistic=change.cusum,
                critical_value=stats_detection.CUSUM_H,
            )
        elif change.kind == stats_detection.DRIFT:
            out["critical_value"] = stats_detection.Z_DRIFT
    return out


def _series_verdict(
    values: np.ndarray,
    run_ids: Sequence[str],
    *,
    higher_is_better: bool,
    threshold: float,
    history_cfg: Mapping[str, Any],
    alpha: float,
    seed: int,
) -> dict[str, Any]:
    """The earlier methods (history.method "change-point" or "rolling z-score") on one
    metric's per-run medians (time order, current run last); positive series on the log
    scale (a step is relative). They judge the current level afresh at every run, so a
    change reads as new for as long as it stands."""
    log_scale = bool((values > 0).all())
    y = np.log(values) if log_scale else values.astype(float)
    back = np.exp if log_scale else (lambda v: v)
    method = history_cfg.get("method", STEP_AND_DRIFT_METHOD)
    scale = "log of per-run medians" if log_scale else "per-run medians (not all positive)"
    out = _no_change_fields()
    if method == stats.ROLLING_Z_METHOD:
        window = int(history_cfg.get("max_runs", 100))
        z_limit = float(history_cfg.get("z_threshold", 5.0))
        z = float(stats.rolling_zscore(y, window=window)[-1])
        prior = y[-window - 1 : -1]
        before, current = float(back(np.mean(prior))), float(values[-1])
        changed = bool(abs(z) > z_limit)  # NaN (too few runs) is no change
        improvement = _relative_change(before, current, higher_is_better)
        if changed:
            out.update(
                change_points=json.dumps([run_ids[-1]]),
                change_at=run_ids[-1],
                change_began_at=run_ids[-1],
                change_kind=stats_detection.STEP,
                new=True,
                at_current_run=True,
            )
        return {
            **out,
            "method": f"{stats.ROLLING_Z_METHOD} (|z| > {z_limit:g}, window {window})",
            "level_before": before,
            "level_current": current,
            "improvement": improvement,
            "statistic_name": "z",
            "statistic": z,
            "critical_value": z_limit,
            "verdict": _judge(improvement, threshold, changed),
            "why": (
                f"z = {z:.3g} of the current run against {len(prior)} earlier runs ({scale}); "
                f"|z| {'>' if changed else '<='} {z_limit:g}"
            ),
        }
    cp = stats.change_points(y, alpha=alpha, seed=seed)
    bounds = (0, *cp.indices, len(y))
    named = f"{stats.CHANGE_POINT_METHOD} (binary segmentation, max-t at alpha={alpha:g})"
    if not cp.indices:  # the current run against the level of the earlier ones
        before, current = float(back(np.mean(y[:-1]))), float(values[-1])
        return {
            **out,
            "method": named,
            "level_before": before,
            "level_current": current,
            "improvement": _relative_change(before, current, higher_is_better),
            "statistic_name": "max-t",
            "statistic": cp.top_statistic,
            "critical_value": cp.top_critical_value,
            "verdict": V.NO_CHANGE,
            "why": (
                f"no change point in {len(y)} runs ({scale}): max-t {cp.top_statistic:.3g} "
                f"<= critical {cp.top_critical_value:.3g}"
            ),
        }
    j = _previous_level(bounds, cp.levels)
    before, current = float(back(cp.levels[j])), float(back(cp.levels[-1]))
    improvement = _relative_change(before, current, higher_is_better)
    last = cp.indices[-1]
    out.update(
        change_points=json.dumps([run_ids[i] for i in cp.indices]),
        change_at=run_ids[last],
        change_began_at=run_ids[last],
        change_confirmed_at=run_ids[-1],
        change_kind=stats_detection.STEP,
        confirmed=True,
        new=True,
        at_current_run=last == len(y) - 1,
        p_value=cp.p_values[-1],
    )
    return {
        **out,
        "method": named,
        "level_before": before,
        "level_current": current,
        "improvement": improvement,
        "statistic_name": "max-t",
        "statistic": cp.statistics[-1],
        "critical_value": cp.critical_values[-1],
        "verdict": _judge(improvement, threshold, True),
        "why": (
            f"{len(cp.indices)} change point(s) in {len(y)} runs ({scale}); the current level "
            f"holds since run {run_ids[last]} (max-t {cp.statistics[-1]:.3g} > critical "
            f"{cp.critical_values[-1]:.3g}) and is judged against the level of runs "
            f"{run_ids[bounds[j]]}..{run_ids[bounds[j + 1] - 1]}"
        ),
    }


def _machine_of(row: Any) -> tuple[Any, Any]:
    return (row.host, row.cpu_model)


def _run_order(metrics: pd.DataFrame) -> list[str]:
    """Run ids oldest first by the run's time (``started_at`` as load_metrics gives it:
    when the run was made), then run id."""
    runs = metrics[["run_id", "started_at"]].drop_duplicates("run_id")
    return runs.sort_values(["started_at", "run_id"], kind="mergesort")["run_id"].tolist()


def _correct_new_changes(rows: list[dict[str, Any]], alpha: float) -> None:
    """Benjamini-Hochberg at ``alpha`` over the changes new at this run, across the
    metrics of each suite judged by step-and-drift (a metric with nothing new counts with
    p = 1); a new regression/improvement not selected reads as suspected. NaN p-values
    are left out, never an error."""
    for suite in sorted({r["suite"] for r in rows}):
        members = [
            r for r in rows if r["suite"] == suite and r["method"].startswith(STEP_AND_DRIFT_METHOD)
        ]
        if len(members) < 2:
            continue
        p = [r["p_value"] if r["new"] and r["confirmed"] else 1.0 for r in members]
        corrected = stats_detection.correct_across_metrics(
            p, [r["verdict"] for r in members], alpha=alpha
        )
        for r, verdict in zip(members, corrected, strict=True):
            if verdict != r["verdict"]:
                r["verdict"] = verdict
                r["reason"] += (
                    f"; not selected by Benjamini-Hochberg at alpha={alpha:g} across the "
                    f"{len(members)} metrics of suite {suite} (p = {r['p_value']:.2g}): suspected"
                )


def _series_rows(
    kept: Sequence[Any], current: Any, current_id: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Run ids, per-run medians and their standard errors (NaN where not recorded)."""
    runs = [*kept, current]
    run_ids = [p.run_id for p in kept] + [current_id]
    values = np.array([p.median for p in runs], dtype=float)
    se = np.array([getattr(p, "se_log_median", math.nan) for p in runs], dtype=float)
    return run_ids, values, se


def detect_regressions(
    metrics: pd.DataFrame,
    current_id: str,
    pairwise: pd.DataFrame | None,
    statistics_cfg: Mapping[str, Any],
    history_cfg: Mapping[str, Any],
    *,
    seed: int,
) -> pd.DataFrame:
    """Per metric of the current run: a regression verdict and the method that gave it.

    ``metrics`` is load_metrics (every stored run's per-metric table). The series of a
    metric holds the earlier runs (at most ``history.max_runs``, default 100, including
    the current one) with the same benchmark version, parameters and machine (unless
    history.cross_version / cross_machine) and no failed operations, then the current
    run. With enough runs in it (``history.min_runs``, default 5, and for step-and-drift
    at least stats_detection.runs_to_confirm()), ``history.method`` decides (default
    step-and-drift, see HISTORY_RULE; new changes then go through Benjamini-Hochberg
    across the metrics of each suite); with fewer, the metric's row of ``pairwise``
    (compare_runs against the baseline) is used. A metric the current run failed
    operations of is "failed". Each metric is judged against its own practical threshold
    (metric_threshold: ``statistics.metric_thresholds``, else the run's).
    """
    min_runs = int(history_cfg.get("min_runs", 5))
    max_runs = int(history_cfg.get("max_runs", 100))
    if max_runs < min_runs:
        raise ForgebenchError(
            f"history.max_runs ({max_runs}) is below history.min_runs ({min_runs}): the "
            "history method could never be used; raise max_runs or lower min_runs"
        )
    method = str(history_cfg.get("method", STEP_AND_DRIFT_METHOD))
    if method not in HISTORY_METHODS:
        raise ForgebenchError(f"history.method: {method!r} is not one of {list(HISTORY_METHODS)}")
    if method == STEP_AND_DRIFT_METHOD:
        min_runs = max(min_runs, stats_detection.runs_to_confirm())
    cross_machine = bool(history_cfg.get("cross_machine", False))
    cross_version = bool(history_cfg.get("cross_version", False))
    settings = stats.Settings.from_config(_settings_cfg(statistics_cfg))
    alpha = float(statistics_cfg.get("alpha", 0.05))
    order = _run_order(metrics)
    if current_id not in order:
        raise ForgebenchError(f"run {current_id!r} has no metrics in the history")
    position = order.index(current_id)
    earlier = order[max(0, position - (max_runs - 1)) : position]
    rank = {rid: i for i, rid in enumerate(order)}
    past = metrics[metrics["run_id"].isin(earlier)]
    past_groups = dict(tuple(past.groupby(COMPARISON_KEYS, sort=False)))
    pair_index: dict[tuple, dict[str, Any]] = {}
    if pairwise is not None and not pairwise.empty:
        for r in pairwise.to_dict("records"):
            pair_index[tuple(r[k] for k in COMPARISON_KEYS)] = r
    baseline_id = None if pairwise is None or pairwise.empty else pairwise["baseline_run"].iloc[0]
    out = []
    current = metrics[metrics["run_id"] == current_id].sort_values(METRIC_KEYS)
    for c in current.itertuples(index=False):
        key = (c.suite, c.benchmark, c.case, c.metric)
        threshold = metric_threshold(statistics_cfg, c.suite, c.benchmark, c.metric)
        excluded: dict[str, int] = {}
        kept = []
        group = past_groups.get(key)
        if group is not None:
            for p in sorted(group.itertuples(index=False), key=lambda r: rank[r.run_id]):
                if p.benchmark_version != c.benchmark_version and not cross_version:
                    excluded["another benchmark version"] = (
                        excluded.get("another benchmark version", 0) + 1
                    )
                elif p.params != c.params:
                    excluded["other parameters"] = excluded.get("other parameters", 0) + 1
                elif _machine_of(p) != _machine_of(c) and not cross_machine:
                    excluded["another machine"] = excluded.get("another machine", 0) + 1
                elif p.n_failed > 0 or p.n_ok == 0 or not math.isfinite(p.median):
                    excluded["failed operations"] = excluded.get("failed operations", 0) + 1
                else:
                    kept.append(p)
        run_ids, values, se = _series_rows(kept, c, current_id)
        row: dict[str, Any] = {
            "suite": c.suite,
            "benchmark": c.benchmark,
            "case": c.case,
            "params": c.params,
            "metric": c.metric,
            "unit": c.unit,
            "higher_is_better": bool(c.higher_is_better),
            "n_runs": len(run_ids),
            "n_excluded": int(sum(excluded.values())),
            "runs": json.dumps(run_ids),
            "threshold": threshold,
            **_no_change_fields(),
        }
        left_out = ", ".join(f"{n} with {why}" for why, n in sorted(excluded.items()))
        note = f"; left out {left_out}" if left_out else ""
        budget, _ = stats.budget_verdict(
            int(c.n_failed), int(c.n_failed + c.n_ok), error_budget=settings.error_budget
        )
        over = c.n_failed > 0 and (
            budget == V.OVER_BUDGET or c.n_failed / (c.n_failed + c.n_ok) > settings.error_budget
        )
        if over:
            row.update(
                method="none",
                verdict=V.FAILED,
                reason=(
                    f"the current run failed {c.n_failed} of {c.n_failed + c.n_ok} operations, "
                    f"more than the error budget of {settings.error_budget:.1%}: no speed "
                    f"verdict on partial work{note}"
                ),
            )
        elif c.n_ok == 0 or not math.isfinite(c.median):
            row.update(
                method="none",
                verdict=V.UNDETERMINED,
                reason=f"no successful value in the current run (only by-design rows){note}",
            )
        elif len(run_ids) >= min_runs:
            if method == STEP_AND_DRIFT_METHOD:
                result = _detection_verdict(
                    values,
                    se,
                    run_ids,
                    higher_is_better=bool(c.higher_is_better),
                    threshold=threshold,
                )
            else:
                result = _series_verdict(
                    values,
                    run_ids,
                    higher_is_better=bool(c.higher_is_better),
                    threshold=threshold,
                    history_cfg=history_cfg,
                    alpha=alpha,
                    seed=seed,
                )
            why = result.pop("why")
            row.update(result)
            limit = "" if "threshold ±" in why else f"; threshold ±{threshold:.1%}"
            row["reason"] = f"{why}{limit}{note}"
        else:
            pair = pair_index.get(key)
            row["method"] = f"{PAIRWISE_METHOD} {baseline_id}" if baseline_id else "none"
            fewer = f"{len(run_ids)} comparable run(s) < {min_runs} for {method}"
            if pair is None:
                row.update(
                    verdict=V.UNDETERMINED,
                    reason=f"{fewer}, and the baseline run has no rows of this metric{note}",
                )
            else:
                row.update(
                    level_before=pair.get("median_baseline"),
                    level_current=pair.get("median_candidate"),
                    improvement=pair.get("improvement"),
                    p_value=pair.get("p_value", math.nan),
                    statistic_name="p",
                    statistic=pair.get("p_value", math.nan),
                    critical_value=alpha,
                    verdict=pair["verdict"],
                    reason=f"{fewer}: pairwise against {baseline_id}: {pair['reason']}{note}",
                )
        out.append(row)
    _correct_new_changes(out, alpha)
    return pd.DataFrame(out, columns=REGRESSION_COLUMNS)


# ------------------------------------------------------------------ the rule


def _method_summary(regressions: pd.DataFrame) -> tuple[str, dict[str, int]]:
    counts = {str(k): int(v) for k, v in regressions["method"].value_counts().sort_index().items()}
    if not counts:
        return "none", counts
    if len(counts) == 1:
        return next(iter(counts)), counts
    return "mixed: " + "; ".join(f"{m} for {n} metric(s)" for m, n in counts.items()), counts


def update_history(
    raw_paths: Sequence[str | os.PathLike[str]],
    history_root: str | os.PathLike[str],
    *,
    run_json: str | os.PathLike[str],
    comparison_path: str | os.PathLike[str],
    regressions_path: str | os.PathLike[str],
    history_cfg: Mapping[str, Any],
    statistics: Mapping[str, Any],
    seed: int,
) -> dict[str, Any]:
    """The ``history`` rule: append the run, compare it with its baseline, detect
    regressions over the history, write the three outputs; return run.json's content.

    With no baseline yet (the first run) both tables are empty and run.json says why.
    """
    rid = append_run(raw_paths, history_root)
    runs = list_runs(history_root)
    setting = str(history_cfg.get("baseline", "previous"))
    if setting.endswith(".tar.gz") or Path(setting).is_dir():
        # a run exported elsewhere (`forgebench history export`): a CI job's baseline
        from forgebench.run_archive import import_run

        setting = import_run(history_root, setting)
        runs = list_runs(history_root)
    baseline_id = select_baseline(runs, rid, setting)
    cross = {
        "cross_machine": bool(history_cfg.get("cross_machine", False)),
        "cross_version": bool(history_cfg.get("cross_version", False)),
    }
    current = runs[runs["run_id"] == rid].iloc[0]
    info: dict[str, Any] = {
        "run_id": rid,
        "started_at": current["started_at"].isoformat(),
        "baseline_setting": setting,
        "baseline_id": baseline_id,
        "n_runs_stored": len(runs),
        "min_runs": int(history_cfg.get("min_runs", 5)),
        "history_method": history_cfg.get("method", STEP_AND_DRIFT_METHOD),
        **cross,
        "comparability_rule": COMPARABILITY_RULE,
        "family_rule": FAMILY_RULE,
        "history_rule": HISTORY_RULE,
    }
    if baseline_id is None:
        comparison = pd.DataFrame(columns=[*COMPARISON_KEYS, "unit", "family", "verdict", "reason"])
        regressions = pd.DataFrame(columns=REGRESSION_COLUMNS)
        info["note"] = (
            "no earlier run in the history: nothing to compare this run against yet; "
            "the next run will be compared with this one"
        )
    else:
        cur_rows, cur_prov = load_run(history_root, rid)
        base_rows, base_prov = load_run(history_root, baseline_id)
        comparison = compare_runs(
            cur_rows, base_rows, cur_prov, base_prov, statistics, seed=seed, **cross
        )
        regressions = detect_regressions(
            load_metrics(history_root), rid, comparison, statistics, history_cfg, seed=seed
        )
        info["baseline_started_at"] = str(
            runs.set_index("run_id").loc[baseline_id, "started_at"].isoformat()
        )
        info["note"] = ""
    info["method"], info["methods"] = _method_summary(regressions)
    info["comparison_verdicts"] = _counts(comparison)
    info["regression_verdicts"] = _counts(regressions)
    meta = {"kind": "history", "run_id": rid, "baseline_id": baseline_id}
    record.write_derived_table(comparison, comparison_path, meta)
    record.write_derived_table(regressions, regressions_path, meta)
    write_text_atomic(run_json, json.dumps(info, indent=2, sort_keys=True) + "\n")
    log.info("run %s, baseline %s, method %s", rid, baseline_id, info["method"])
    return info


def _counts(table: pd.DataFrame) -> dict[str, int]:
    if table.empty:
        return {}
    return {str(k): int(v) for k, v in table["verdict"].value_counts().sort_index().items()}


# ------------------------------------------------------------------------ text


def _value(value: Any, unit: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{float(value):.4g} {unit}".rstrip()


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{float(value) * 100:+.1f}%"


def format_runs(runs: pd.DataFrame) -> list[str]:
    """The stored runs as text lines for a terminal, oldest first."""
    if runs.empty:
        return ["no runs stored yet: each workflow run is appended to results/history/"]
    lines = [
        f"{len(runs)} run(s), oldest first:",
        "run id            made (UTC)           rows  host / CPU / commit",
    ]
    for r in runs.to_dict("records"):
        started = (
            r["started_at"].strftime("%Y-%m-%d %H:%M:%S") if pd.notna(r["started_at"]) else "—"
        )
        commit = (r["git_commit"] or "—")[:12]
        lines.append(
            f"{r['run_id']}  {started}  {r['n_rows']:>6}  "
            f"{r['host'] or '—'} / {r['cpu_model'] or '—'} / {commit}"
        )
    return lines


def format_comparison(
    table: pd.DataFrame, baseline: Mapping[str, Any], candidate: Mapping[str, Any]
) -> list[str]:
    """A compare_runs table as text lines: the two runs, the rules, then each family."""

    def describe(run: Mapping[str, Any]) -> str:
        commit = (run.get("git_commit") or "—")[:12]
        return (
            f"{run.get('run_id')} made {run.get('started_at')} on {run.get('host') or '—'} "
            f"({run.get('cpu_model') or '—'}), commit {commit}"
        )

    lines = [
        f"baseline:  {describe(baseline)}",
        f"candidate: {describe(candidate)}",
        f"rule: {COMPARABILITY_RULE}",
        f"rule: {FAMILY_RULE}",
    ]
    if table.empty:
        lines.append("no metric to show (none in both runs, or every one filtered out)")
        return lines
    for family, members in table.groupby("family", sort=True):
        lines.append("")
        lines.append(f"family {family}: {len(members)} metric(s)")
        for r in members.to_dict("records"):
            ci = r.get("improvement_ci") or (math.nan, math.nan)
            lines.append(
                f"  {r['benchmark']} {r['case']} {r['metric']}: "
                f"{_value(r.get('median_baseline'), r['unit'])} -> "
                f"{_value(r.get('median_candidate'), r['unit'])}, improvement "
                f"{_pct(r.get('improvement'))} [{_pct(ci[0])}, {_pct(ci[1])}]: {r['verdict']}"
            )
            lines.append(f"      {r['reason']}")
    counts = _counts(table)
    lines.append("")
    lines.append("verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    return lines


#: Verdicts that say nothing changed or nothing could be said; ``--all`` shows them too.
UNCHANGED = (V.NO_CHANGE, V.INCONCLUSIVE, V.UNDETERMINED, "no significant change")


def filter_comparison(
    table: pd.DataFrame,
    *,
    suite: str | None = None,
    benchmark: str | None = None,
    metric: str | None = None,
    verdicts: Sequence[str] = (),
    changed_only: bool = True,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows of a compare_runs table a reader asked for, and the verdict counts of the
    rows left out (so every metric stays accounted for)."""
    if table.empty or "verdict" not in table:
        return table, {}
    keep = pd.Series(True, index=table.index)
    for column, wanted in (("suite", suite), ("benchmark", benchmark), ("metric", metric)):
        if wanted is not None:
            keep &= table[column].astype(str) == wanted
    if verdicts:
        keep &= table["verdict"].isin(list(verdicts))
    elif changed_only:
        keep &= ~table["verdict"].isin(UNCHANGED)
    return table[keep], _counts(table[~keep])


def comparison_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """A compare_runs table as JSON-ready records (the columns a reader acts on)."""
    keys = [*COMPARISON_KEYS, "unit", "family", "verdict", "improvement", "improvement_ci",
            "median_baseline", "median_candidate", "n_failed_baseline", "n_failed_candidate",
            "noisy", "reason"]  # fmt: skip
    out = []
    for r in table.to_dict("records"):
        rec = {k: r.get(k) for k in keys if k in r}
        ci = rec.get("improvement_ci")
        if ci is not None and not isinstance(ci, list | tuple):
            rec["improvement_ci"] = list(ci)
        out.append({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                    for k, v in rec.items()})  # fmt: skip
    return out


def format_comparison_markdown(table: pd.DataFrame) -> list[str]:
    """A compare_runs table as one Markdown table (for a pull-request comment)."""
    lines = [
        "| suite/benchmark | case | metric | baseline | candidate | improvement [CI] | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table.to_dict("records"):
        ci = r.get("improvement_ci")
        ci = (math.nan, math.nan) if ci is None or isinstance(ci, float) else ci
        lines.append(
            f"| {r['suite']}/{r['benchmark']} | {r['case']} | {r['metric']} | "
            f"{_value(r.get('median_baseline'), r['unit'])} | "
            f"{_value(r.get('median_candidate'), r['unit'])} | {_pct(r.get('improvement'))} "
            f"[{_pct(ci[0])}, {_pct(ci[1])}] | {r['verdict']} |"
        )
    return lines
