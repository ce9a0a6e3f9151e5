"""The chained compression pipeline (one final artifact) and the unified selector."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SHARED_DATASETS

from forgebench.compression import perplexity, pipeline, selector
from forgebench.compression.artifact import ArtifactError, write_artifact
from forgebench.compression.compress_model import compress_state_dict, decompress_artifact
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


def test_first_stage_decodes_to_the_jobs_artifact_bit_for_bit(tmp_path: Path) -> None:
    """The chain's first stage is the compression job's artifact, not a recompression: the
    job's artifact here is made from *other* weights (same config), so only reading it
    gives its tensors; a differing config is compressed here and the facts say why."""
    state = _state()
    other = {k: v * 1.5 + 0.01 for k, v in state.items()}
    for cfg in ({"method": "bitnet", "packing": "base3"}, {**VPTQ, "hessian_weighted": False}):
        job = tmp_path / f"{cfg['method']}.fbc"
        art, _ = compress_state_dict(other, {**cfg, "name": cfg["method"]})
        write_artifact(job, art)
        stage = {k: v for k, v in cfg.items() if k != "packing"}  # base3 is the default
        first = pipeline.reuse_first_stage(job, stage)
        assert first[0] is not None and first[1]["source"] == "compression job artifact"
        decoded, facts, _ = pipeline.run_chain(state, [stage], None, tmp_path / "c.fbc", first)
        assert pipeline.same_tensors(decoded, decompress_artifact(job))
        assert facts[0]["bytes"] == job.stat().st_size and facts[0]["path"] == str(job)
        fresh, _, _ = pipeline.run_chain(state, [stage], None, tmp_path / "d.fbc")
        assert not pipeline.same_tensors(decoded, fresh)
    differs = {"method": "bitnet", "packing": "2bit"}
    first = pipeline.reuse_first_stage(tmp_path / "bitnet.fbc", differs)
    assert first[0] is None and "differs" in first[1]["reason"]
    decoded, facts, _ = pipeline.run_chain(state, [differs], None, tmp_path / "e.fbc", first)
    assert facts[0]["source"] == "compressed here"
    fresh, _, _ = pipeline.run_chain(state, [differs], None, tmp_path / "f.fbc")
    assert pipeline.same_tensors(decoded, fresh)


def test_workflow_gives_the_pipeline_the_matching_jobs_artifact() -> None:
    from forgebench.config import SCHEMA_PATH, check_config, load_yaml
    from forgebench.workflow import benchmark_inputs

    full = load_yaml(SCHEMA_PATH.parent / "full.yaml")
    check_config(full)
    got = benchmark_inputs(full, "compression", "pipeline")
    assert got["first_stage"] == "results/compression/smollm2/bitnet.fbc"
    comp = {"enabled": True, "models": ["m"], "methods": {"int8": {}, "vptq": {"seed": 3},
            "bitnet": {"packing": "2bit", "enabled": True}}}  # fmt: skip
    config = {"suites": {"compression": comp}}
    section = {"model": "m", "stages": [{"method": "vptq", "seed": 3}]}
    assert pipeline.first_stage_artifact(config, section) == "results/compression/m/vptq.fbc"
    for stage in ({"method": "vptq"}, {"method": "bitnet"}, {"method": "fp16"}):
        assert pipeline.first_stage_artifact(config, {**section, "stages": [stage]}) is None
    assert pipeline.first_stage_artifact(config, {**section, "model": "n"}) is None
    comp["methods"]["vptq"]["enabled"] = False
    assert pipeline.first_stage_artifact(config, section) is None


def test_unknown_stage_method_names_the_key() -> None:
    with pytest.raises(ForgebenchError, match=r"stages\[1\]"):
        pipeline.stage_configs({"stages": [{"method": "bitnet"}, {"method": "gptq"}]})


def test_choose_decides_on_intervals() -> None:
    m = {
        "int8": {"ratio": 1.97, "low": -0.003, "high": 0.004},
        "vptq": {"ratio": 7.5, "low": 0.20, "high": 0.30},
        "seedlm": {"ratio": 4.0, "low": 0.25, "high": 0.40},
        "bitnet": {"ratio": 9.8, "low": 5e5, "high": 2e6},
        "broken": {"ratio": math.nan, "low": math.nan, "high": math.nan},
    }
    # vptq has the lowest upper bound; seedlm's interval reaches below it: not separable,
    # and vptq has the larger ratio
    assert selector.choose(m, 4.0) == ("vptq", False)
    assert selector.choose(m, 1.5) == ("int8", True)
    assert selector.choose({**m, "seedlm": {"ratio": 8.0, "low": 0.25, "high": 0.4}}, 4.0) == (
        "seedlm",
        False,
    )  # tied within intervals: the larger ratio
    assert selector.choose(m, 25.0) == (None, False)


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


def test_pipeline_run_starts_from_the_jobs_artifact(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    model, ds = setup
    job = tmp_path / "bitnet.fbc"
    art, _ = compress_state_dict(pipeline.load_state(model), {"method": "bitnet", "name": "bitnet"})
    write_artifact(job, art)
    cfg = {
        "name": "chain",
        "stages": [CHAIN[0], {**VPTQ, "hessian_weighted": False}],
        "codec": None,
        "perplexity_tokens": 128,
        "perplexity_context": 64,
        "model_dir": str(model),
        "datasets_dir": str(ds),
        "first_stage_artifact": str(job),
    }
    frame = pipeline.run(cfg, seed=1)
    assert (frame["status"] == "ok").all(), frame[frame["status"] != "ok"]
    params = frame["params"].iloc[0]
    params = json.loads(params) if isinstance(params, str) else params
    assert params["first_stage"] == {"source": "compression job artifact", "path": str(job)}
    assert params["stage_facts"][1]["source"] == "compressed here"
    stage_bytes = frame[frame["metric"] == "stage_artifact_bytes"]["value"].tolist()
    assert stage_bytes[0] == job.stat().st_size


def _quality(folder: Path, name: str, ppl: np.ndarray, card: perplexity.PerplexityCard) -> None:
    frame = pd.DataFrame(
        {"document": np.arange(ppl.size), "text_sha256": [f"d{i}" for i in range(ppl.size)],
         "nll": np.log(ppl) * 100, "tokens": np.full(ppl.size, 100), "perplexity": ppl}
    )  # fmt: skip
    perplexity.write_result(folder / f"{name}.perplexity.parquet", frame, card)


def test_selector_reads_the_jobs_outputs_and_picks_on_intervals(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = {f"model.layers.{i}.mlp.up_proj.weight": torch.randn(64, 32) for i in range(2)}
    state["model.embed_tokens.weight"] = torch.randn(50, 32)
    for name in ("int8", "bitnet"):
        art, _ = compress_state_dict(state, {"method": name})
        write_artifact(tmp_path / f"{name}.fbc", art)
    card = perplexity.PerplexityCard("t", "a" * 64, "b" * 64, 512, 256, True, 30, 3000)
    rng = np.random.default_rng(0)
    base = np.exp(rng.normal(3, 0.5, 30))
    _quality(tmp_path, "original", base, card)
    _quality(tmp_path, "int8", base * np.exp(rng.normal(0.001, 0.002, 30)), card)
    _quality(tmp_path, "bitnet", base * np.exp(rng.normal(10, 1, 30)), card)
    cfg = {"candidates": ["int8", "bitnet"], "compression_dir": str(tmp_path)}
    frame = selector.run({**cfg, "target_ratio": 1.5}, seed=1)
    assert (frame["status"] == "ok").all(), frame[frame["status"] != "ok"]
    per = {c: _values(frame, c) for c in ("int8", "bitnet")}
    n_q, n_all = 2 * 64 * 32, 2 * 64 * 32 + 50 * 32
    assert per["int8"]["ratio"] == pytest.approx(2 * n_q / (n_q + 4 * 128))  # + row scales
    assert per["int8"]["perplexity_change_ci_high"] < 0.01
    sel = _values(frame, "selection")
    assert per["int8"]["picked"] == 1.0 and sel["pick_separated"] == 1.0
    assert sel["pick_confirmed"] == 1.0
    # 4x against fp16 (4 bits/weight): only the ternary one meets it
    sel = _values(selector.run({**cfg, "target_ratio": 4.0}, seed=1), "selection")
    assert sel["pick_ratio"] > 4.0
    whole = selector.run({**cfg, "ratio_basis": "whole", "ratio_reference": "fp32"}, seed=1)
    assert _values(whole, "int8")["ratio"] == pytest.approx(
        4 * n_all / (tmp_path / "int8.fbc").stat().st_size
    )
    # a quality file measured on another text is refused, not paired
    _quality(tmp_path, "bitnet", base, perplexity.PerplexityCard(
        "t", "c" * 64, "b" * 64, 512, 256, True, 30, 3000))  # fmt: skip
    with pytest.raises(ForgebenchError, match="perplexity cards differ"):
        selector.run(cfg, seed=1)
