"""Lossless codecs: round trips, ratios, the framed container and the benchmark's rows."""

from __future__ import annotations

import zlib
from pathlib import Path

import pandas as pd
import pytest

from forgebench.compression import codecs
from forgebench.compression.artifact import ArtifactError
from forgebench.errors import ForgebenchError
from forgebench.record import Recorder

TEXT = (
    b"Question: Which gas do plants take in for photosynthesis?\nAnswer: carbon dioxide\n\n"
    b"Question: Natalia sold clips to 48 of her friends in April, and then she sold half as "
    b"many clips in May. How many clips did Natalia sell altogether?\nAnswer: 72\n\n"
) * 50


@pytest.mark.parametrize(
    "name,level", [("zlib", 1), ("zlib", 9), ("lzma", 6), ("bz2", 9), ("zstd", 3)]
)
def test_codec_round_trips_with_positive_ratio(name: str, level: int) -> None:
    c = codecs.get_codec(name, level)
    comp = c.compress(TEXT, level)
    assert c.decompress(comp) == TEXT
    assert len(TEXT) / len(comp) > 1.0


def test_bad_codec_or_level_names_the_key() -> None:
    with pytest.raises(ForgebenchError, match="brotli"):
        codecs.get_codec("brotli", 1, "k")
    with pytest.raises(ForgebenchError, match=r"zlib level 12 outside 0\.\.9"):
        codecs.get_codec("zlib", 12, "k")


def test_frame_round_trips_and_refuses_damage() -> None:
    blob = codecs.wrap(TEXT, "zstd", 3)
    assert codecs.unwrap(blob) == (TEXT, "zstd", 3)
    with pytest.raises(ArtifactError, match="truncated"):
        codecs.unwrap(blob[:20])
    with pytest.raises(ArtifactError, match="cannot decompress"):
        codecs.unwrap(blob[:-10])
    bad = bytearray(blob)
    bad[70] ^= 0x01  # inside the sha256 of the header
    with pytest.raises(ArtifactError, match="corrupted"):
        codecs.unwrap(bytes(bad))
    with pytest.raises(ArtifactError, match="not a forgebench codec frame"):
        codecs.unwrap(b"X" * 100)


def test_a_codec_that_does_not_round_trip_is_a_mismatch_and_untimed() -> None:
    broken = codecs.Codec("zlib", (0, 9), lambda d, lv: zlib.compress(d, lv), lambda b: b"oops")
    rec = Recorder("compression", "lossless_codecs", 1)
    codecs.measure_case(rec, "text_broken", {}, TEXT, broken, 6, 3)
    frame = rec.frame()
    assert set(frame["status"]) == {"mismatch"}
    assert frame["value"].isna().all()


def _datasets(root: Path) -> Path:
    (root / "gsm8k").mkdir(parents=True)
    pd.DataFrame(
        {"question": ["How many legs do 3 cats have?"] * 30, "answer": ["3 * 4 = 12\n#### 12"] * 30}
    ).to_parquet(root / "gsm8k" / "test.parquet")
    (root / "arc_easy").mkdir()
    pd.DataFrame(
        {
            "id": [f"q{i}" for i in range(20)],
            "question": ["Which is a mammal?"] * 20,
            "choices": [{"text": ["cat", "fish"], "label": ["A", "B"]}] * 20,
            "answerKey": ["A"] * 20,
        }
    ).to_parquet(root / "arc_easy" / "test.parquet")
    return root


def test_dataset_text_reads_every_string_field(tmp_path: Path) -> None:
    root = _datasets(tmp_path / "ds")
    text = codecs.dataset_text(root, "arc_easy", 0)
    assert b"Which is a mammal?\ncat\nfish\nA\nB\nA" in text
    assert len(codecs.dataset_text(root, "arc_easy", 50)) == 50
    with pytest.raises(ForgebenchError, match="datasets"):
        codecs.dataset_text(root, "piqa", 0)


def test_benchmark_rows(tmp_path: Path) -> None:
    root = _datasets(tmp_path / "ds")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    cfg = {
        "datasets_dir": str(root),
        "model_dir": str(model),
        "datasets": ["gsm8k", "arc_easy"],
        "codecs": [{"codec": "zlib", "level": 6}, {"codec": "zstd", "level": 3}],
        "weight_bytes": 4096,
        "weight_chunks": 4,
        "repetitions": 2,
    }
    frame = codecs.run(cfg, seed=0)
    assert (frame["status"] == "ok").all()
    assert set(frame["case"]) == {"text_zlib6", "text_zstd3", "weights_zlib6", "weights_zstd3"}
    ratio = frame[frame["metric"] == "ratio"].set_index("case")["value"]
    size = frame[frame["metric"] == "original_bytes"].set_index("case")["value"]
    comp = frame[frame["metric"] == "compressed_bytes"].set_index("case")["value"]
    assert (ratio > 1).all()
    assert (ratio - size / comp).abs().max() < 1e-12
    assert size["weights_zlib6"] == 4096
    timed = frame[(frame["metric"] == "compress_throughput") & ~frame["warmup"]]
    assert len(timed) == 4 * 2 and (timed["value"] > 0).all()
    assert (frame[frame["metric"] == "compress_peak_traced"]["value"] >= 0).all()
