"""The measurement record: the one place that defines, validates, writes and reads results.

Every benchmark writes long-format Parquet, one row per observation (see
docs/architecture.md). Failures are rows too: a status other than ``ok`` keeps the
observation visible, so nothing is silently dropped. Each file carries its schema version
and the provenance of the run in the Parquet key-value metadata; readers refuse versions
they do not know.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from forgebench.atomic import atomic_path
from forgebench.errors import ForgebenchError, SchemaVersionError

SCHEMA_VERSION = 1
METADATA_KEY = b"forgebench"

STATUSES = ("ok", "timeout", "mismatch", "skipped", "unavailable", "censored")
_STATUS_RE = re.compile(
    r"^(ok|timeout|mismatch|skipped|unavailable|censored|error:[A-Za-z_][\w.]*)$"
)

MEASUREMENT_SCHEMA = pa.schema(
    [
        ("suite", pa.string()),
        ("benchmark", pa.string()),
        ("benchmark_version", pa.int64()),
        ("case", pa.string()),
        ("params", pa.string()),
        ("metric", pa.string()),
        ("unit", pa.string()),
        ("higher_is_better", pa.bool_()),
        ("value", pa.float64()),
        ("repetition", pa.int64()),
        ("sample", pa.int64()),
        ("warmup", pa.bool_()),
        ("status", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
    ]
)
COLUMNS = tuple(MEASUREMENT_SCHEMA.names)

RESOURCE_SCHEMA = pa.schema(
    [
        ("t_s", pa.float64()),
        ("metric", pa.string()),
        ("unit", pa.string()),
        ("value", pa.float64()),
    ]
)

_KINDS = {"measurements": MEASUREMENT_SCHEMA, "resources": RESOURCE_SCHEMA}


def status_for(exc: BaseException) -> str:
    """The status of an operation that raised ``exc``: ``timeout`` or ``error:<Class>``."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    return f"error:{type(exc).__name__}"


def canonical_params(params: Mapping[str, Any] | str) -> str:
    """Params as canonical JSON (sorted keys), so equal params compare equal as strings."""
    if isinstance(params, str):
        params = json.loads(params)
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def utcnow() -> datetime:
    """The current UTC time, the only clock ``started_at`` is stamped with."""
    return datetime.now(UTC)


class Recorder:
    """Collects rows of one benchmark column by column (cheap for 10^5+ rows).

    Example::

        rec = Recorder("network", "echo_latency", version=1)
        rec.add("persistent_64B", {"payload": 64}, "latency", "s", False, 2.1e-5,
                repetition=0, sample=i)
        frame = rec.frame()
    """

    def __init__(self, suite: str, benchmark: str, version: int) -> None:
        self.suite = suite
        self.benchmark = benchmark
        self.version = int(version)
        self._cols: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        # id(params) -> (params, text); holding params keeps its id from being reused.
        self._params_cache: dict[int, tuple[Mapping[str, Any], str]] = {}

    def __len__(self) -> int:
        return len(self._cols["value"])

    def add(
        self,
        case: str,
        params: Mapping[str, Any],
        metric: str,
        unit: str,
        higher_is_better: bool,
        value: float,
        *,
        repetition: int = 0,
        sample: int = 0,
        warmup: bool = False,
        status: str = "ok",
        started_at: datetime | None = None,
    ) -> None:
        """Append one observation; a failed one gets its status and ``value`` NaN."""
        cached = self._params_cache.get(id(params))
        if cached is None or cached[0] is not params:
            cached = (params, canonical_params(params))
            self._params_cache[id(params)] = cached
        text = cached[1]
        c = self._cols
        c["suite"].append(self.suite)
        c["benchmark"].append(self.benchmark)
        c["benchmark_version"].append(self.version)
        c["case"].append(case)
        c["params"].append(text)
        c["metric"].append(metric)
        c["unit"].append(unit)
        c["higher_is_better"].append(bool(higher_is_better))
        c["value"].append(float("nan") if value is None else float(value))
        c["repetition"].append(int(repetition))
        c["sample"].append(int(sample))
        c["warmup"].append(bool(warmup))
        c["status"].append(status)
        c["started_at"].append(started_at or utcnow())

    def frame(self) -> pd.DataFrame:
        """The rows so far, validated, as a DataFrame in the record's column order."""
        self._params_cache.clear()
        return validate_measurements(pd.DataFrame(self._cols, columns=list(COLUMNS)))


def _fail(message: str) -> None:
    raise ForgebenchError(f"invalid measurement record: {message}")


def _rows_where(column: pd.Series, is_bad: Any) -> pd.Series | None:
    """Which rows of a column of strings ``is_bad`` says are bad, or None when none is.

    Asked once per distinct value first: a raw table repeats a few names over 10^5 rows,
    and asking every row took most of the time of reading results. Distinct strings are
    never equal to values of other types, so the answer is the same as row by row.
    """
    try:
        distinct = column.unique()
    except TypeError:  # unhashable values: ask row by row
        distinct = column.to_numpy()
    if not any(is_bad(v) for v in distinct):
        return None
    return column.map(is_bad)


def validate_measurements(frame: pd.DataFrame) -> pd.DataFrame:
    """Check columns, types and status vocabulary; return the frame with canonical dtypes.

    Raises ForgebenchError naming the first problem found: a missing or unknown column,
    a status outside the vocabulary, an ``ok`` row without a finite value, a negative
    repetition or sample index.
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    extra = [c for c in frame.columns if c not in COLUMNS]
    if missing or extra:
        _fail(f"missing columns {missing}, unexpected columns {extra}; expected {list(COLUMNS)}")
    out = frame.loc[:, list(COLUMNS)].copy()
    for col in ("suite", "benchmark", "case", "params", "metric", "unit", "status"):
        bad = _rows_where(out[col], lambda v: not isinstance(v, str) or v == "")
        if bad is not None:
            _fail(f"column {col!r} needs non-empty strings; row {int(np.flatnonzero(bad)[0])}")
    bad_status = _rows_where(out["status"], lambda s: not _STATUS_RE.match(s))
    if bad_status is not None:
        first = out["status"][bad_status].iloc[0]
        _fail(f"status {first!r} is not one of {STATUSES} or 'error:<Class>'")
    for col in ("benchmark_version", "repetition", "sample"):
        try:
            out[col] = out[col].astype("int64")
        except (TypeError, ValueError) as exc:
            _fail(f"column {col!r} must be integers ({exc})")
        if (out[col] < 0).any():
            _fail(f"column {col!r} must be >= 0")
    for col in ("higher_is_better", "warmup"):
        if (
            out[col].dtype != bool
            and not out[col].map(lambda v: isinstance(v, (bool, np.bool_))).all()
        ):
            _fail(f"column {col!r} must be booleans")
        out[col] = out[col].astype(bool)
    try:
        out["value"] = out["value"].astype("float64")
    except (TypeError, ValueError) as exc:
        _fail(f"column 'value' must be numbers ({exc})")
    ok = out["status"] == "ok"
    if (ok & ~np.isfinite(out["value"].to_numpy())).any():
        _fail("a row with status 'ok' has a non-finite value; record the failure as a status")
    try:
        out["started_at"] = pd.to_datetime(out["started_at"], utc=True).astype(
            "datetime64[us, UTC]"
        )
    except (TypeError, ValueError) as exc:
        _fail(f"column 'started_at' must be timestamps ({exc})")
    return out


def validate_resources(frame: pd.DataFrame) -> pd.DataFrame:
    """Check the resource-sample table (t_s, metric, unit, value)."""
    names = list(RESOURCE_SCHEMA.names)
    if sorted(frame.columns) != sorted(names):
        _fail(f"resource samples need columns {names}, got {list(frame.columns)}")
    out = frame.loc[:, names].copy()
    out["t_s"] = out["t_s"].astype("float64")
    out["value"] = out["value"].astype("float64")
    return out


def _metadata(kind: str, provenance: Mapping[str, Any]) -> dict[bytes, bytes]:
    doc = {"schema_version": SCHEMA_VERSION, "kind": kind, "provenance": dict(provenance)}
    return {METADATA_KEY: json.dumps(doc, sort_keys=True, default=str).encode()}


def _write(frame: pd.DataFrame, path: str | Path, kind: str, provenance: Mapping[str, Any]) -> None:
    schema = _KINDS[kind]
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    table = table.replace_schema_metadata(_metadata(kind, provenance))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_measurements(
    frame: pd.DataFrame | Recorder, path: str | Path, provenance: Mapping[str, Any]
) -> pd.DataFrame:
    """Validate and write measurements atomically; return the validated frame."""
    if isinstance(frame, Recorder):
        frame = frame.frame()
    frame = validate_measurements(frame)
    _write(frame, path, "measurements", provenance)
    return frame


def write_resources(frame: pd.DataFrame, path: str | Path, provenance: Mapping[str, Any]) -> None:
    """Write a resource-sample table atomically."""
    _write(validate_resources(frame), path, "resources", provenance)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The file's forgebench metadata; refuses files of another schema version."""
    meta = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in meta:
        raise SchemaVersionError(f"{path}: not a forgebench results file (no metadata)")
    doc = json.loads(meta[METADATA_KEY])
    version = doc.get("schema_version")
    if not isinstance(version, int):
        raise SchemaVersionError(f"{path}: schema version {version!r} is not an integer")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} is stored in record schema v{version}, newer than this forgebench "
            f"understands (v{SCHEMA_VERSION}); upgrade forgebench to read it"
        )
    if version < SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} is stored in record schema v{version}, older than this forgebench "
            f"(v{SCHEMA_VERSION}); rerun the benchmark to regenerate it"
        )
    return doc


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance stored with a results file."""
    return read_metadata(path)["provenance"]


def _read(path: str | Path, kind: str) -> pd.DataFrame:
    doc = read_metadata(path)
    if doc.get("kind") != kind:
        raise ForgebenchError(f"{path} holds {doc.get('kind')!r}, expected {kind!r}")
    return pq.read_table(path).to_pandas()


def read_measurements(path: str | Path) -> pd.DataFrame:
    """Read one measurements file, checking its schema version."""
    return validate_measurements(_read(path, "measurements"))


def read_resources(path: str | Path) -> pd.DataFrame:
    """Read one resource-sample file, checking its schema version."""
    return validate_resources(_read(path, "resources"))


def flatten_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """Pairs in ``*_ci`` columns (confidence intervals) as ``*_ci_low``/``*_ci_high``
    columns, so a derived table has plain Parquet types."""
    out = frame.copy()
    for col in [c for c in out.columns if c.endswith("_ci")]:
        pairs = out[col].map(
            lambda v: v if isinstance(v, (tuple, list)) and len(v) == 2 else (None, None)
        )
        out[f"{col}_low"] = [p[0] for p in pairs]
        out[f"{col}_high"] = [p[1] for p in pairs]
        out = out.drop(columns=col)
    return out


def write_derived_table(frame: pd.DataFrame, path: str | Path, meta: Mapping[str, Any]) -> None:
    """A table computed from records (summary, verdicts, history), atomically, with what it
    is in the forgebench metadata and no clock, so equal input gives equal bytes."""
    table = pa.Table.from_pandas(flatten_pairs(frame), preserve_index=False)
    doc = {"schema_version": SCHEMA_VERSION, **meta}
    table = table.replace_schema_metadata(
        {
            **(table.schema.metadata or {}),
            METADATA_KEY: json.dumps(doc, sort_keys=True, default=str).encode(),
        }
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def concat_measurements(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Read many measurement files into one frame (empty frame with the columns if none)."""
    frames = [read_measurements(p) for p in paths]
    if not frames:
        return validate_measurements(pd.DataFrame({c: [] for c in COLUMNS}))
    return pd.concat(frames, ignore_index=True)


def is_finite(value: float) -> bool:
    """True for a real number (not NaN or infinite)."""
    return value is not None and math.isfinite(value)
