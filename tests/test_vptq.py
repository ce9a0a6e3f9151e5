"""VPTQ: known answers, codebook size vs error, Hessian weighting, calibration, artifact
round trips and refusal of damaged records."""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import pytest
import torch

from forgebench.compression import artifact, vptq
from forgebench.compression.artifact import ArtifactError, TensorRecord
from forgebench.compression.calibration import calibrate, hessian_diagonals
from forgebench.errors import ForgebenchError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _cfg(**kw: object) -> vptq.VPTQConfig:
    base = {"hessian_weighted": False, "kmeans_iterations": 30, "kmeans_tolerance": 0.0}
    return vptq.VPTQConfig(**{**base, **kw})


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_error_falls_as_the_codebook_grows() -> None:
    w = torch.randn(64, 48, generator=torch.Generator().manual_seed(1))
    errs = []
    for k in (4, 16, 64, 256):
        rec = vptq.encode("w", w, _cfg(vector_length=4, codebook_size=k))
        errs.append(_rel_err(vptq.decode(rec), w))
    assert all(a > b for a, b in itertools.pairwise(errs)), errs
    assert errs[-1] < 0.5 * errs[0]


def test_residual_codebook_lowers_the_error() -> None:
    w = torch.randn(64, 48, generator=torch.Generator().manual_seed(2))
    one = vptq.decode(vptq.encode("w", w, _cfg(codebook_size=16)))
    two = vptq.decode(vptq.encode("w", w, _cfg(codebook_size=16, residual_codebook_size=16)))
    assert _rel_err(two, w) < 0.8 * _rel_err(one, w)


@pytest.mark.parametrize("layout", ["column", "row"])
def test_exactly_k_distinct_vectors_are_reconstructed_exactly(layout: str) -> None:
    g = torch.Generator().manual_seed(3)
    patterns = torch.tensor(  # values exact in float16
        [[1.0, -2.0, 0.5, 0.25], [0.0, 3.0, -1.0, 2.0], [-0.5, -0.5, 4.0, 1.0]]
    )
    pick = torch.randint(0, 3, (40,), generator=g)
    pick[:3] = torch.arange(3)  # every pattern present
    vecs = patterns[pick]  # (40, 4)
    shape = (16, 10) if layout == "column" else (10, 16)
    w = vptq.from_vectors(vecs, shape, 4, layout, 0)
    rec = vptq.encode("w", w, _cfg(vector_length=4, codebook_size=3, layout=layout))
    assert rec.meta["codebook_size"] == 3
    assert len(rec.segments["indices"]) == math.ceil(40 * 2 / 8)
    assert torch.equal(vptq.decode(rec), w)


def test_vectors_round_trip_with_padding() -> None:
    w = torch.arange(5 * 7, dtype=torch.float32).reshape(5, 7)
    for layout in ("column", "row"):
        vecs, pad = vptq.to_vectors(w, 3, layout)
        assert (vecs.shape[0], pad) == vptq.vector_count((5, 7), 3, layout)
        assert torch.equal(vptq.from_vectors(vecs, (5, 7), 3, layout, pad), w)


def test_weighted_distance_moves_the_assignment_toward_the_heavy_coordinate() -> None:
    x = torch.tensor([[0.6, 0.3]])
    c = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    plain, _ = vptq.assign(x, torch.ones(1, 2), c, 16)
    heavy0, _ = vptq.assign(x, torch.tensor([[10.0, 1.0]]), c, 16)
    heavy1, _ = vptq.assign(x, torch.tensor([[1.0, 10.0]]), c, 16)
    # Euclidean: (0,0) is nearer; weighting coordinate 0 (0.6 vs 1: error 0.16 < 0.36)
    # prefers (1,1); weighting coordinate 1 (0.3 vs 0: 0.09 < 0.49) keeps (0,0).
    assert plain.tolist() == [0] and heavy0.tolist() == [1] and heavy1.tolist() == [0]


def test_heavy_vector_pulls_its_centroid_and_pushes_the_light_one_away() -> None:
    x = torch.tensor([[0.0], [1.1], [2.0], [2.4]])
    init = torch.tensor([[0.0], [2.0]])
    kw = {"iterations": 10, "tolerance": 0.0, "generator": torch.Generator(), "init": init}
    _, plain, _ = vptq.kmeans(x, torch.ones(4), 2, **kw)
    c, weighted, _ = vptq.kmeans(x, torch.tensor([1.0, 1.0, 1.0, 100.0]), 2, **kw)
    assert plain.tolist() == [0, 1, 1, 1]  # centroid 1.83: 1.1 stays with the upper group
    assert weighted.tolist() == [0, 0, 1, 1]  # centroid ~2.39: 1.1 moves to the lower one
    assert abs(float(c[1, 0]) - 2.4) < 0.01


def test_hessian_weighting_protects_the_heavy_input_column() -> None:
    g = torch.Generator().manual_seed(4)
    w = torch.randn(32, 16, generator=g)
    h = torch.ones(16)
    h[0] = 1e4
    cfg = {"vector_length": 4, "codebook_size": 8, "kmeans_iterations": 30, "hessian_damp": 0.0}
    weighted = vptq.decode(vptq.encode("w", w, vptq.Calibrated(cfg, {"w": h}, 100)))
    plain = vptq.decode(vptq.encode("w", w, {**cfg, "hessian_weighted": False}))
    err_w = float((weighted[:, 0] - w[:, 0]).norm())
    err_p = float((plain[:, 0] - w[:, 0]).norm())
    assert err_w < 0.5 * err_p
    # ... paid for by the light columns
    assert _rel_err(weighted[:, 1:], w[:, 1:]) > _rel_err(plain[:, 1:], w[:, 1:])


def _proxy(d: torch.Tensor, w: torch.Tensor, h: torch.Tensor) -> float:
    return float((((d - w) ** 2) * h).sum() / ((w**2) * h).sum()) ** 0.5


def test_sampled_fit_keeps_the_heavy_column_in_the_codebook() -> None:
    """smollm2's down_proj in layers 11 and 28: one input column with ~1,400x the mean
    Hessian diagonal. A uniform 6% fitting sample holds about one of that column's 16
    vectors; the codebook then missed them (Hessian-weighted error 6x RTN's on smollm2).
    Drawn in proportion to the weight, the sampled fit comes near the full fit's loss."""
    g = torch.Generator().manual_seed(5)
    w = torch.randn(64, 256, generator=g) * 0.02
    h = torch.ones(256)
    h[7] = 1.4e3
    cfg = {"vector_length": 4, "codebook_size": 16, "kmeans_iterations": 20, "seed": 1}
    full = vptq.decode(vptq.encode("w", w, vptq.Calibrated(cfg, {"w": h}, 100)))
    errs = []
    for seed in range(3):
        sampled_cfg = {**cfg, "kmeans_sample": 256, "seed": seed}
        rec = vptq.encode("w", w, vptq.Calibrated(sampled_cfg, {"w": h}, 100))
        errs.append(_proxy(vptq.decode(rec), w, h))
    assert max(errs) < 1.5 * _proxy(full, w, h), (errs, _proxy(full, w, h))


def test_weighted_sample_draws_in_proportion_and_weighs_entries() -> None:
    g = torch.Generator().manual_seed(0)
    idx, sw = vptq.weighted_sample(torch.tensor([1.0, 0.0, 3.0]), 4000, g)
    assert 1 not in idx.tolist() and abs(float((idx == 2).float().mean()) - 0.75) < 0.03
    assert torch.equal(sw, torch.ones(4000))
    per_entry = torch.tensor([[1.0, 3.0], [2.0, 2.0]])
    idx, sw = vptq.weighted_sample(per_entry, 10, g)
    assert torch.allclose(sw, per_entry[idx] / 4.0)


def test_missing_hessian_is_a_clear_error() -> None:
    with pytest.raises(ForgebenchError, match="no Hessian diagonal for w"):
        vptq.encode("w", torch.randn(8, 8), {"codebook_size": 4})
    with pytest.raises(ForgebenchError, match="codebook_size"):
        vptq.VPTQConfig.from_mapping({"codebook_size": 1}, "m")


def test_hessian_diagonal_is_the_mean_input_second_moment() -> None:
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(3, 2, bias=False)
            self.b = torch.nn.Linear(2, 1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x))

    net = Net()
    x1, x2 = torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[3.0, 0.0, -1.0], [1.0, 1.0, 1.0]])
    hd = hessian_diagonals(net, [x1, x2])
    xs = torch.cat([x1, x2])
    assert torch.allclose(hd["a.weight"], xs.square().mean(dim=0))
    with torch.no_grad():
        assert torch.allclose(hd["b.weight"], net.a(xs).square().mean(dim=0))


def test_theoretical_bits_match_the_payload() -> None:
    w = torch.randn(40, 24, generator=torch.Generator().manual_seed(5))
    cfg = {
        "vector_length": 4,
        "codebook_size": 32,
        "residual_codebook_size": 8,
        "hessian_weighted": False,
    }
    rec = vptq.encode("w", w, cfg)
    n = 240  # 24 columns x 10 vectors
    want = n * 5 + 32 * 4 * 16 + n * 3 + 8 * 4 * 16
    assert vptq.theoretical_bits(cfg, (40, 24)) == want
    assert abs(8 * rec.payload_bytes - want) < 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import TEXT, make_tiny_llama

    path = make_tiny_llama(tmp_path_factory.mktemp("tiny") / "m")
    (path / "calib.txt").write_text("\n".join(TEXT))
    return path


def test_calibrated_model_artifact_round_trips_and_refuses_damage(tiny: Path) -> None:
    from safetensors.torch import load_file

    from forgebench.compression.pipeline import compress_state, decode_state

    texts = (tiny / "calib.txt").read_text().splitlines()
    hd, n = calibrate(tiny, texts, max_tokens=256, context=64)
    assert n == 256
    state = load_file(str(tiny / "model.safetensors"))
    quantised = [k for k in state if "layers" in k and state[k].ndim == 2]
    assert quantised and all(k in hd for k in quantised)
    cfg = vptq.calibrated(
        {
            "method": "vptq",
            "codebook_size": 16,
            "calibration_tokens": 256,
            "calibration_context": 64,
        },
        tiny,
        texts,
    )
    assert isinstance(cfg, vptq.Calibrated) and set(cfg) == {
        "method",
        "codebook_size",
        "calibration_tokens",
        "calibration_context",
    }
    other = {"method": "int8"}
    assert vptq.prepare(other, tiny, texts) is other
    hooked = vptq.prepare({**cfg, "name": "v"}, tiny, texts)
    assert torch.equal(hooked.hessian_diag[quantised[0]], cfg.hessian_diag[quantised[0]])
    art = compress_state(state, cfg, "t")
    data, sizes = artifact.encode(art)
    direct = {r.name: vptq.decode(r) for r in art.tensors if r.encoding == "vptq"}
    back = decode_state(data, "mem")
    for name, t in direct.items():
        assert torch.equal(back[name], t)
        assert _rel_err(t, state[name]) < 0.9
    assert sizes.quantised_payload == sum(r.payload_bytes for r in art.tensors if not r.kept)
    with pytest.raises(ArtifactError, match="truncated"):
        decode_state(data[:-5], "cut")
    bad = bytearray(data)
    bad[-3] ^= 0xFF
    with pytest.raises(ArtifactError, match="corrupted"):
        decode_state(bytes(bad), "flipped")


def test_damaged_vptq_record_is_refused() -> None:
    w = torch.randn(8, 8, generator=torch.Generator().manual_seed(6))
    rec = vptq.encode("w", w, {"codebook_size": 3, "hessian_weighted": False})

    def with_seg(name: str, data: bytes) -> TensorRecord:
        return TensorRecord(
            rec.name,
            rec.shape,
            rec.dtype,
            rec.encoding,
            {**rec.segments, name: data},
            dict(rec.meta),
        )

    with pytest.raises(ArtifactError, match="codebook"):
        vptq.decode(with_seg("codebook", rec.segments["codebook"][:-2]))
    with pytest.raises(ArtifactError, match="packed segment"):
        vptq.decode(with_seg("indices", rec.segments["indices"][:-1]))
    with pytest.raises(ArtifactError, match="outside a codebook of 3"):
        vptq.decode(with_seg("indices", b"\xff" * len(rec.segments["indices"])))
    meta = {**rec.meta, "vectors": 3}
    broken = TensorRecord(rec.name, rec.shape, rec.dtype, rec.encoding, rec.segments, meta)
    with pytest.raises(ArtifactError, match="vectors"):
        vptq.decode(broken)
