"""Weight compressors: artifact format, known answers, BitNet's ternary values, metrics, and
compress_model end to end on a tiny random Llama."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATASETS
from tiny_models import make_tiny_llama

from forgebench.compression import artifact, baselines, bitnet, metrics, perplexity
from forgebench.compression.artifact import Artifact, ArtifactError, TensorRecord
from forgebench.compression.compress_model import (
    compress_model,
    compress_state_dict,
    decode_record,
    decompress_artifact,
    reference_perplexity,
)
from forgebench.errors import ForgebenchError

METHOD_CFGS = [
    {"method": "fp16"},
    {"method": "int8"},
    {"method": "bitnet", "packing": "base3"},
    {"method": "bitnet", "packing": "2bit"},
    {"method": "seedlm", "lfsr_bits": 6, "search": "exhaustive"},
    {"method": "seedlm", "lfsr_bits": 8, "search": "pruned", "prune_top": 8},
]


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "model.embed_tokens.weight": torch.randn(50, 16, generator=g),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(16, 16, generator=g) * 0.05,
        "model.layers.0.mlp.down_proj.weight": torch.randn(16, 36, generator=g) * 0.05,
        "model.layers.0.input_layernorm.weight": torch.ones(16),
        "lm_head.weight": torch.randn(50, 16, generator=g),
    }


@pytest.mark.parametrize("cfg", METHOD_CFGS, ids=lambda c: "-".join(map(str, c.values())))
def test_every_artifact_format_round_trips(tmp_path: Path, cfg: dict) -> None:
    state = _state()
    art, theoretical = compress_state_dict(state, cfg)
    path = tmp_path / "m.fbc"
    sizes = artifact.write_artifact(path, art)
    assert sizes.total == path.stat().st_size
    back, sizes2 = artifact.read_artifact(path)
    assert sizes2 == sizes
    assert back.method == cfg["method"]
    assert [t.name for t in back.tensors if t.kept] == [
        "model.embed_tokens.weight",
        "model.layers.0.input_layernorm.weight",
        "lm_head.weight",
    ]
    decoded = decompress_artifact(path)
    for rec in art.tensors:  # bytes on disk decode exactly as the in-memory records do
        assert torch.equal(decoded[rec.name], decode_record(rec))
        assert decoded[rec.name].shape == state[rec.name].shape
    kept_err = (decoded["lm_head.weight"] - state["lm_head.weight"]).abs().max()
    assert float(kept_err) < 1e-2  # float16 keeps them close
    n_q = 16 * 16 + 16 * 36
    bpw = 8 * sizes.quantised_payload / n_q
    assert bpw == pytest.approx(theoretical / n_q, rel=0.01)


def test_truncated_corrupted_and_foreign_artifacts_raise_clear_errors(tmp_path: Path) -> None:
    art, _ = compress_state_dict(_state(), {"method": "int8"})
    data, _ = artifact.encode(art)
    path = tmp_path / "m.fbc"
    path.write_bytes(data[:-10])
    with pytest.raises(ArtifactError, match="truncated"):
        artifact.read_artifact(path)
    path.write_bytes(data[:20])
    with pytest.raises(ArtifactError, match="truncated"):
        artifact.read_artifact(path)
    flipped = bytearray(data)
    flipped[-5] ^= 0x01
    path.write_bytes(bytes(flipped))
    with pytest.raises(ArtifactError, match="corrupted"):
        artifact.read_artifact(path)
    path.write_bytes(b"PK\x03\x04" + data[4:])
    with pytest.raises(ArtifactError, match="magic"):
        artifact.read_artifact(path)
    newer = bytearray(data)
    struct.pack_into("<I", newer, 8, artifact.FORMAT_VERSION + 1)
    path.write_bytes(bytes(newer))
    with pytest.raises(ArtifactError, match="version"):
        artifact.read_artifact(path)
    with pytest.raises(ArtifactError, match="cannot read"):
        artifact.read_artifact(tmp_path / "missing.fbc")
    assert issubclass(ArtifactError, ForgebenchError)


def test_header_keeps_high_precision_tensors_apart() -> None:
    art, _ = compress_state_dict(_state(), {"method": "bitnet"})
    data, sizes = artifact.encode(art)
    hlen = struct.unpack_from("<Q", data, 12)[0]
    header = json.loads(data[artifact.PREAMBLE_BYTES : artifact.PREAMBLE_BYTES + hlen])
    assert {e["name"] for e in header["kept"]} == {
        "model.embed_tokens.weight",
        "model.layers.0.input_layernorm.weight",
        "lm_head.weight",
    }
    first_kept = min(s["offset"] for e in header["kept"] for s in e["segments"].values())
    assert first_kept == sizes.quantised_payload  # kept region follows the quantised one


def test_bitnet_values_are_minus_gamma_zero_gamma() -> None:
    w = torch.randn(64, 48, generator=torch.Generator().manual_seed(2)) * 0.1
    rec = bitnet.encode("w", w, {"packing": "base3"})
    out = bitnet.decode(rec)
    gamma = np.float32(w.abs().mean())
    values = set(np.unique(out.numpy()).tolist())
    assert values == {-float(gamma), 0.0, float(gamma)}


def test_bitnet_known_answer() -> None:
    w = torch.tensor([[0.5, -0.02, 0.3, -0.9], [0.0, 0.11, -0.4, 0.07]])
    codes, gamma = bitnet.ternarise(w)
    assert gamma == pytest.approx(float(np.float32(2.30 / 8)))  # mean |w| = 0.2875
    assert codes.tolist() == [[1, 0, 1, -1], [0, 0, -1, 0]]
    for packing in bitnet.PACKINGS:
        rec = bitnet.encode("w", w, {"packing": packing})
        assert len(rec.segments["codes"]) == -(-8 // (5 if packing == "base3" else 4))
        assert bitnet.decode(rec).tolist() == (codes.float() * np.float32(gamma)).tolist()


def test_int8_and_fp16_known_answers() -> None:
    w = torch.tensor([[1.27, -0.5, 0.0], [0.0, 0.0, 0.0], [-2.54, 0.02, 1.0]])
    rec = baselines.encode_int8("w", w, {})
    q = np.frombuffer(rec.segments["codes"], dtype=np.int8).reshape(3, 3)
    assert q.tolist() == [[127, -50, 0], [0, 0, 0], [-127, 1, 50]]
    s = np.frombuffer(rec.segments["scales"], dtype=np.float32)
    np.testing.assert_allclose(s, [0.01, 1.0, 0.02], rtol=1e-6)
    np.testing.assert_allclose(baselines.decode(rec).numpy(), w.numpy(), atol=0.01)
    exact = torch.tensor([[0.5, -0.25], [1024.0, 3.0]])
    assert torch.equal(baselines.decode(baselines.encode_fp16("w", exact, {})), exact)


def test_round_to_nearest_known_answers_and_q4_1_grid() -> None:
    w = torch.tensor([[0.0, 0.6, 2.0, 3.0, -1.0, -1.0, 1.0, 1.0]])
    # groups of 4 at 2 bits: [0, 3] in steps of 1; [-1, 1] in steps of 2/3
    got = baselines.round_to_nearest(w, 2, 4)
    want = [0.0, 1.0, 2.0, 3.0, -1.0, -1.0, 1.0, 1.0]
    np.testing.assert_allclose(got.numpy()[0], want, atol=1e-3)
    assert baselines.round_to_nearest_bits((2, 8), 2, 4) == 2 * 16 + 32 * 4
    # weights already on a Q4_1 grid (d * q + m, q spanning 0..15 in each group of 32,
    # d and m exact in float16) come back exactly: the grid smollm2's GGUF weights lie on
    g = torch.Generator().manual_seed(3)
    q = torch.randint(0, 16, (6, 64), generator=g).float()
    q[:, ::32], q[:, 1::32] = 0.0, 15.0
    d = torch.tensor([0.5, 0.25, 0.125, 1.0, 2.0, 0.0625]).repeat_interleave(2).reshape(6, 2)
    m = -torch.tensor([1.0, 2.0, 0.5, 4.0, 3.0, 0.25]).repeat_interleave(2).reshape(6, 2)
    w = (q.reshape(6, 2, 32) * d[..., None] + m[..., None]).reshape(6, 64)
    assert torch.equal(baselines.round_to_nearest(w, 4, 32), w)
    assert not torch.equal(baselines.round_to_nearest(w, 3, 32), w)
    with pytest.raises(ValueError):
        baselines.round_to_nearest(w, 4, 48)


def test_pack_bits_round_trips_every_width() -> None:
    rng = np.random.default_rng(1)
    for width in (1, 3, 7, 8, 13, 28, 32, 33, 64):
        hi = 2**width - 1
        vals = rng.integers(0, min(hi, 2**62), size=101, dtype=np.uint64)
        vals[0] = min(hi, 2**63 - 1)
        data = artifact.pack_bits(vals, width)
        assert len(data) == (101 * width + 7) // 8
        np.testing.assert_array_equal(artifact.unpack_bits(data, width, 101), vals)
    with pytest.raises(ValueError):
        artifact.pack_bits(np.array([8]), 3)
    with pytest.raises(ArtifactError):
        artifact.unpack_bits(b"\x00", 8, 2)


def test_size_metrics_and_relative_errors() -> None:
    sizes = artifact.ArtifactSizes(
        total=1100, preamble=60, header=40, quantised_payload=500, kept_payload=500
    )
    m = metrics.size_metrics(
        sizes, quantised_weights=1000, total_weights=1250, theoretical_bits=4000.0
    )
    assert m["bits_per_weight"] == 4.0
    assert m["ratio_vs_fp32_quantised"] == 8.0
    assert m["ratio_vs_fp16_quantised"] == 4.0
    assert m["ratio_vs_fp32_whole"] == pytest.approx(5000 / 1100)
    assert m["metadata_bytes"] == 100
    assert m["bits_per_weight_excess"] == 0.0
    a = {"x": torch.tensor([3.0, 4.0]), "y": torch.tensor([0.0, 0.0])}
    b = {"x": torch.tensor([3.0, 3.0]), "y": torch.tensor([0.0, 0.0])}
    per, overall = metrics.relative_errors(a, b, ["x", "y"])
    assert per == {"x": pytest.approx(0.2), "y": 0.0}
    assert overall == pytest.approx(0.2)
    assert metrics.is_quantised("model.layers.3.mlp.up_proj.weight", torch.zeros(4, 4))
    assert not metrics.is_quantised("model.embed_tokens.weight", torch.zeros(4, 4))
    assert not metrics.is_quantised("model.norm.weight", torch.zeros(4))


def test_unknown_method_is_a_config_error() -> None:
    with pytest.raises(ForgebenchError, match="vptq"):
        compress_state_dict(_state(), {"method": "vptq"})
    with pytest.raises(ForgebenchError, match="high_precision_dtype"):
        compress_state_dict(_state(), {"method": "int8", "high_precision_dtype": "int4"})


def _heldout_texts(n_bytes: int) -> list[str]:
    path = SHARED_DATASETS / "gsm8k" / "train.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found (the dataset mirror)")
    out, total = [], 0
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            out.append(doc["question"] + "\n" + doc["answer"])
            total += len(out[-1])
            if total >= n_bytes:
                break
    return out


def test_compress_model_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    texts = _heldout_texts(16000)
    model_dir = make_tiny_llama(tmp_path / "tiny", texts=texts, vocab_size=300, max_positions=128)
    (model_dir / "source.json").write_text(
        json.dumps({"gguf": {"file": "x.gguf", "bytes": 1000, "tensor_type_counts": {"Q4_1": 3}}})
    )
    quality = {"perplexity_tokens": 3000, "perplexity_context": 64, "perplexity_stride": 32}
    ref_path = tmp_path / "original.perplexity.parquet"
    ref_rows = reference_perplexity(model_dir, texts[:40], quality, out_quality=ref_path)
    assert set(ref_rows["case"]) == {"original"}
    out_art, out_model = tmp_path / "seedlm.fbc", tmp_path / "tiny_seedlm"
    frame = compress_model(
        model_dir,
        {"method": "seedlm", "lfsr_bits": 6, "name": "seedlm_k6"},
        out_artifact=out_art,
        out_model_dir=out_model,
        heldout_documents=texts[:40],
        reference_quality=ref_path,
        out_quality=tmp_path / "seedlm.perplexity.parquet",
        seed=0,
        throughput_new_tokens=4,
        throughput_repetitions=1,
        **quality,
    )
    assert set(frame["status"]) == {"ok"}
    assert set(frame["case"]) == {"seedlm_k6"}
    m = frame.drop_duplicates("metric").set_index("metric")["value"]
    assert m["artifact_bytes"] == os.path.getsize(out_art)
    assert m["bits_per_weight"] == pytest.approx((6 + 4 + 12) / 8)
    assert m["ratio_vs_fp32_quantised"] == pytest.approx(32 / m["bits_per_weight"])
    assert m["ratio_vs_fp16_quantised"] == pytest.approx(16 / m["bits_per_weight"])
    assert m["ratio_vs_gguf_file"] == pytest.approx(1000 / m["artifact_bytes"])
    assert 0 < m["relative_error"] < 1
    assert m["perplexity"] > 1 and m["perplexity_original"] > 1
    assert m["perplexity_original"] == ref_rows.set_index("metric")["value"]["perplexity"]
    assert m["perplexity_change_ci_low"] <= m["perplexity_change"] <= m["perplexity_change_ci_high"]
    assert m["tokens_per_s"] > 0
    params = json.loads(frame[frame["metric"] == "perplexity_change"]["params"].iloc[0])
    assert params["inference"] == "dense"
    assert params["perplexity_verdict"] in (
        "regression",
        "no change",
        "inconclusive",
        "improvement",
    )
    assert params["perplexity_card"]["stride"] == 32
    assert "already quantised" in params["weights_origin"]
    assert "lm_head.weight" in params["kept_tensors"]
    assert frame["metric"].str.startswith("relative_error.model.layers.0.").any()
    # the per-document result carries the same card as the original's
    _, card = perplexity.read_result(tmp_path / "seedlm.perplexity.parquet")
    assert card == perplexity.read_result(ref_path)[1]
    # the decompressed model is an ordinary HF directory
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out_model)
    got = model.state_dict()["model.layers.0.mlp.up_proj.weight"]
    want = decompress_artifact(out_art)["model.layers.0.mlp.up_proj.weight"]
    assert torch.equal(got, want)
    # a reference scored with another window is refused, not paired
    other = tmp_path / "other.perplexity.parquet"
    reference_perplexity(model_dir, texts[:40], {**quality, "perplexity_stride": 48},
                         out_quality=other)  # fmt: skip
    with pytest.raises(ForgebenchError, match=r"perplexity cards differ.*stride"):
        compress_model(
            model_dir,
            {"method": "int8"},
            out_artifact=tmp_path / "int8.fbc",
            out_model_dir=tmp_path / "tiny_int8",
            heldout_documents=texts[:40],
            reference_quality=other,
            out_quality=tmp_path / "int8.perplexity.parquet",
            seed=0,
            **quality,
        )


def test_artifact_rejects_segment_outside_payload() -> None:
    rec = TensorRecord("w", (2,), "float32", "raw_float32", {"values": b"\x00" * 8})
    data, _ = artifact.encode(Artifact("fp16", {}, [rec]))
    # a header whose offsets point past the payload, with a digest that matches it
    hlen = struct.unpack_from("<Q", data, 12)[0]
    header = json.loads(data[artifact.PREAMBLE_BYTES : artifact.PREAMBLE_BYTES + hlen])
    header["quantised"][0]["segments"]["values"]["offset"] = 4
    body = json.dumps(header).encode() + data[artifact.PREAMBLE_BYTES + hlen :]
    import hashlib

    pre = struct.pack(
        "<8sIQQ32s",
        artifact.MAGIC,
        artifact.FORMAT_VERSION,
        len(body) - 8,
        8,
        hashlib.sha256(body).digest(),
    )
    with pytest.raises(ArtifactError, match="outside the payload"):
        artifact.decode(pre + body)


def _variant(case: str, bits: float, change: float, low: float, high: float, verdict: str,
             post_training: bool = False) -> dict:  # fmt: skip
    return {"case": case, "label": case, "bits": bits, "change": change, "low": low,
            "high": high, "verdict": verdict, "post_training": post_training,
            "equivalence": 0.01}  # fmt: skip


def test_quality_findings_read_the_intervals(tmp_path: Path) -> None:
    from forgebench import plots
    from forgebench.report.compression import plan_figures, quality_findings

    follows = [
        _variant("int8", 8.0, 0.002, -0.003, 0.006, "no change"),
        _variant("vptq", 4.0, 0.3, 0.25, 0.35, "regression"),
        _variant("bitnet", 1.6, 1e6, 5e5, 2e6, "regression", post_training=True),
    ]
    text = quality_findings(follows)
    assert "int8, 8 bits/weight: perplexity +0.20% [-0.30%, +0.60%], no change" in text
    assert any(t.startswith("the order follows bits per weight") for t in text)
    assert any("expected finding" in t and t.startswith("bitnet") for t in text)
    broken = [follows[0], _variant("seedlm", 3.0, 0.05, 0.04, 0.06, "regression"), follows[1]]
    text = quality_findings(broken)
    assert "the order does not follow bits per weight: seedlm (3 bits) < vptq" in text
    jobs: list = []
    figures = plan_figures({"variants": follows}, tmp_path, jobs)
    plots.draw(jobs)
    assert len(figures) == 1 and figures[0].path.stat().st_size > 0
    assert plan_figures({"variants": []}, tmp_path, []) == []
