from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from forgebench import record
from forgebench.errors import ForgebenchError, SchemaVersionError
from forgebench.provenance import collect_provenance, config_hash


def _recorder() -> record.Recorder:
    rec = record.Recorder("network", "echo_latency", version=1)
    params = {"payload": 64, "scenario": "persistent"}
    for i in range(5):
        rec.add("persistent_64B", params, "rtt", "s", False, 1e-5 * (i + 1), sample=i)
    rec.add("persistent_64B", params, "rtt", "s", False, 2e-5, sample=0, warmup=True)
    rec.add("persistent_64B", params, "rtt", "s", False, float("nan"), sample=5, status="timeout")
    rec.add(
        "persistent_64B",
        params,
        "rtt",
        "s",
        False,
        None,
        sample=6,
        status="error:ConnectionResetError",
    )
    return rec


def test_round_trip_keeps_rows_types_and_provenance(tmp_path):
    prov = collect_provenance({"a": 1}, seed=7)
    path = tmp_path / "raw.parquet"
    written = record.write_measurements(_recorder(), path, prov)
    back = record.read_measurements(path)
    pd.testing.assert_frame_equal(written, back)
    assert list(back.columns) == list(record.COLUMNS)
    assert back["value"].dtype == np.float64
    assert str(back["started_at"].dtype) == "datetime64[us, UTC]"
    assert back["warmup"].sum() == 1
    assert set(back["status"]) == {"ok", "timeout", "error:ConnectionResetError"}
    assert json.loads(back["params"].iloc[0]) == {"payload": 64, "scenario": "persistent"}
    stored = record.read_provenance(path)
    assert stored["seed"] == 7
    assert stored["config_hash"] == config_hash({"a": 1})
    for key in ("host", "cpu_count_logical", "memory_total_bytes", "python", "packages"):
        assert key in stored
    assert record.read_metadata(path)["schema_version"] == record.SCHEMA_VERSION


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("status", "success", "status 'success'"),
        ("status", "error:", "status 'error:'"),
        ("value", float("nan"), "non-finite value"),
        ("repetition", -1, "'repetition' must be >= 0"),
        ("suite", "", "'suite' needs non-empty strings"),
        ("warmup", "yes", "'warmup' must be booleans"),
    ],
)
def test_write_rejects_bad_rows(tmp_path, column, value, message):
    frame = _recorder().frame()
    frame[column] = frame[column].astype(object)
    frame.loc[0, column] = value
    path = tmp_path / "bad.parquet"
    with pytest.raises(ForgebenchError, match=message):
        record.write_measurements(frame, path, {})
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("case", "", r"'case' needs non-empty strings; row 3$"),
        ("metric", 7, r"'metric' needs non-empty strings; row 3$"),
        ("unit", None, r"'unit' needs non-empty strings; row 3$"),
        ("params", ["a"], r"'params' needs non-empty strings; row 3$"),  # unhashable
        ("status", "success", "status 'success'"),
        ("higher_is_better", 1, "'higher_is_better' must be booleans"),
    ],
)
def test_validation_finds_one_bad_value_among_repeated_good_ones(column, value, message):
    """Must show: checking each distinct value once (how reading stays quick) still finds
    a bad value in any row and names that row, for str-typed and object columns."""
    frame = _recorder().frame()
    frame = pd.concat([frame] * 3, ignore_index=True)
    if column != "status":
        frame[column] = frame[column].astype(object)
    frame.at[3, column] = value
    with pytest.raises(ForgebenchError, match=message):
        record.validate_measurements(frame)
    assert len(record.validate_measurements(_recorder().frame())) == len(_recorder().frame())


def test_write_rejects_missing_and_unknown_columns(tmp_path):
    frame = _recorder().frame().drop(columns=["unit"]).assign(extra=1)
    with pytest.raises(ForgebenchError, match=r"missing columns \['unit'\].*\['extra'\]"):
        record.write_measurements(frame, tmp_path / "x.parquet", {})


@pytest.mark.parametrize(("version", "word"), [(record.SCHEMA_VERSION + 1, "newer"), (0, "older")])
def test_read_refuses_unknown_schema_versions(tmp_path, version, word):
    path = tmp_path / "raw.parquet"
    record.write_measurements(_recorder(), path, {})
    table = pq.read_table(path)
    doc = json.loads(table.schema.metadata[record.METADATA_KEY])
    doc["schema_version"] = version
    table = table.replace_schema_metadata({record.METADATA_KEY: json.dumps(doc).encode()})
    pq.write_table(table, path)
    with pytest.raises(SchemaVersionError, match=word):
        record.read_measurements(path)


def test_read_refuses_foreign_parquet(tmp_path):
    path = tmp_path / "other.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(path)
    with pytest.raises(SchemaVersionError, match="not a forgebench results file"):
        record.read_measurements(path)


_WRITER = """
import sys, pandas as pd
from forgebench import record
rec = record.Recorder("s", "b", 1)
for i in range(400_000):
    rec.add("c", {"i": 1}, "m", "s", False, float(i + 1), sample=i)
frame = rec.frame()
print("ready", flush=True)
record.write_measurements(frame, sys.argv[1], {})
"""


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_interrupted_write_leaves_no_half_file(tmp_path, delay):
    """Kill a writer while it writes: the target never appears half written. (On an idle
    machine the write can finish before the longest delay is up: then it is whole.)"""
    path = tmp_path / "raw.parquet"
    with subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)  # lets the write get under way: test timing, not a workload
        proc.kill()
    if path.exists():  # the write finished before the kill
        assert len(record.read_measurements(path)) == 400_000


def test_failed_write_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "raw.parquet"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(record.pq, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        record.write_measurements(_recorder(), path, {})
    assert list(tmp_path.iterdir()) == []


def test_status_for_exceptions():
    assert record.status_for(TimeoutError()) == "timeout"
    assert record.status_for(ConnectionResetError()) == "error:ConnectionResetError"


def test_concat_of_nothing_has_the_columns():
    assert list(record.concat_measurements([]).columns) == list(record.COLUMNS)
