"""The chained compression pipeline (one final artifact) and the unified selector."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATASETS

from forgebench.compression import pipeline, selector
from forgebench.compression.artifact import ArtifactError
from forgebench.errors import ForgebenchError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

VPTQ = {"method": "vptq", "codebook_size": 16, "calibration_tokens": 256, "calibration_context": 64}
CHAIN = [
    {"method": "bitnet"},
    {"method": "seedlm", "lfsr_bits": 6, "search": "exhaustive"},
    {**VPTQ, "hessian_weighted": False},
]


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "model.embed_tokens.weight": torch.randn(40, 16, generator=g),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(16, 16, generator=g) * 0.05,
        "model.layers.0.mlp.down_proj.weight": torch.randn(16, 32, generator=g) * 0.05,
        "model.norm.weight": torch.ones(16),
    }


def test_chain_writes_one_file_that_reads_back_exactly(tmp_path: Path) -> None:
    state = _state()
    path = tmp_path / "chain.fbc"
    decoded, facts, size = pipeline.run_chain(state, CHAIN, {"codec": "zstd", "level": 3}, path)
    assert [f["method"] for f in facts] == ["bitnet", "seedlm", "vptq"]
    assert size == path.stat().st_size
    assert pipeline.same_tensors(pipeline.read_final(path), decoded)
    # the errors of the stages accumulate: the chain is no better than its first stage
    first, _, _ = pipeline.run_chain(state, CHAIN[:1], None, tmp_path / "one.fbc")
    name = "model.layers.0.mlp.down_proj.weight"
    assert (decoded[name] - state[name]).norm() >= (first[name] - state[name]).norm() * 0.99
    blob = path.read_bytes()
    path.write_bytes(blob[:-7])
    with pytest.raises(ArtifactError):
        pipeline.read_final(path)
    bad = bytearray(blob)
    bad[-1] ^= 0xFF
    path.write_bytes(bytes(bad))
    with pytest.raises(ArtifactError):
        pipeline.read_final(path)


def test_unknown_stage_method_names_the_key() -> None:
    with pytest.raises(ForgebenchError, match=r"stages\[1\]"):
        pipeline.stage_configs({"stages": [{"method": "bitnet"}, {"method": "gptq"}]})


def test_choose_picks_least_loss_among_those_meeting_the_target() -> None:
    m = {
        "int8": {"ratio": 3.9, "perplexity_delta": 0.01},
        "vptq": {"ratio": 7.5, "perplexity_delta": 0.8},
        "seedlm": {"ratio": 8.0, "perplexity_delta": 0.5},
        "bitnet": {"ratio": 19.0, "perplexity_delta": 0.5},
        "broken": {"ratio": math.nan, "perplexity_delta": math.nan},
    }
    assert selector.choose(m, 4.0) == "bitnet"  # tie on loss: the larger ratio
    assert selector.choose(m, 3.0) == "int8"
    assert selector.choose(m, 25.0) is None


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tiny_models import make_tiny_llama

    from forgebench.datasets import prepare

    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"dataset mirror {SHARED_DATASETS} not present")
    root = tmp_path_factory.mktemp("pipe")
    ds = root / "datasets"
    for name in ("arc_challenge", "arc_easy", "gsm8k"):
        prepare(name, mirror=SHARED_DATASETS, allow_online=False, out_dir=ds / name)
    return make_tiny_llama(root / "model"), ds


def _values(frame, case: str) -> dict[str, float]:
    sel = frame[(frame["case"] == case) & (frame["sample"] == 0)]
    return dict(zip(sel["metric"], sel["value"], strict=True))


def test_pipeline_ratio_is_original_bytes_over_final_bytes(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    model, ds = setup
    cfg = {
        "name": "chain",
        "stages": [CHAIN[0], CHAIN[1], VPTQ],
        "codec": {"codec": "zstd", "level": 3},
        "perplexity_tokens": 256,
        "perplexity_context": 64,
        "artifact_dir": str(tmp_path),
        "model_dir": str(model),
        "datasets_dir": str(ds),
    }
    frame = pipeline.run(cfg, seed=1)
    assert (frame["status"] == "ok").all(), frame[frame["status"] != "ok"]
    v = _values(frame, "chain")
    final = (tmp_path / "chain.fbc").stat().st_size
    assert v["final_artifact_bytes"] == final
    assert v["ratio_vs_original_whole"] == v["original_bytes"] / final
    state = pipeline.load_state(model)
    assert v["original_bytes"] == sum(4 * t.numel() for t in state.values())
    stage_bytes = frame[frame["metric"] == "stage_artifact_bytes"]["value"].tolist()
    assert len(stage_bytes) == 3 and final < stage_bytes[-1]
    assert v["perplexity"] > 0 and v["perplexity_original"] > 0


def test_selector_picks_a_measured_candidate_and_confirms_it(setup: tuple[Path, Path]) -> None:
    model, ds = setup
    cfg = {
        "candidates": [
            {"name": "int8", "method": "int8"},
            {"name": "bitnet", "method": "bitnet"},
            {"name": "vptq", **VPTQ},
        ],
        "target_ratio": 4.0,
        "perplexity_tokens": 256,
        "perplexity_context": 64,
        "model_dir": str(model),
        "datasets_dir": str(ds),
    }
    frame = selector.run(cfg, seed=1)
    assert (frame["status"] == "ok").all(), frame[frame["status"] != "ok"]
    per = {c: _values(frame, c) for c in ("int8", "bitnet", "vptq")}
    assert per["int8"]["meets_target"] == 0.0  # 8 bits + row scales: under 4x
    assert per["bitnet"]["meets_target"] == 1.0
    meeting = {c: v["perplexity_delta"] for c, v in per.items() if v["ratio"] >= 4.0}
    best = min(meeting, key=meeting.get)
    assert per[best]["picked"] == 1.0
    assert sum(v["picked"] for v in per.values()) == 1.0
    sel = _values(frame, "selection")
    assert sel["pick_met_target"] == 1.0 and sel["pick_confirmed"] == 1.0
    assert sel["pick_ratio"] == per[best]["ratio"]


def test_selector_codec_candidates_need_the_whole_basis(setup: tuple[Path, Path]) -> None:
    model, ds = setup
    cfg = {
        "candidates": [{"name": "z", "method": "int8", "codec": {"codec": "zlib", "level": 6}}],
        "model_dir": str(model),
        "datasets_dir": str(ds),
    }
    with pytest.raises(ForgebenchError, match="ratio_basis: whole"):
        selector.run(cfg, seed=0)
