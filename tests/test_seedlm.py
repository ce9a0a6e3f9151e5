"""SeedLM and its LFSR: maximal period, bit-exact regeneration, known answers, search agreement."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from forgebench.compression import lfsr, seed_search_bench, seedlm
from forgebench.compression.artifact import ArtifactError
from forgebench.errors import ForgebenchError

CPU = torch.device("cpu")


@pytest.mark.parametrize("bits", range(lfsr.MIN_BITS, 17))
def test_lfsr_taps_have_maximal_period_by_enumeration(bits: int) -> None:
    visited = set()
    s = 1
    for _ in range((1 << bits) - 1):
        s = lfsr.step_int(s, bits)
        visited.add(s)
    assert s == 1  # back at the seed after exactly 2^K - 1 steps ...
    assert len(visited) == (1 << bits) - 1  # ... having visited every non-zero state
    assert 0 not in visited


def test_lfsr_k16_period_count_and_wider_tables() -> None:
    assert lfsr.period(16) == 65535
    assert lfsr.period(16, seed=0xACE1) == 65535
    for bits in (17, 18):
        assert lfsr.period(bits) == (1 << bits) - 1


def test_lfsr_vectorised_step_matches_scalar_step() -> None:
    seeds = np.array([1, 2, 0xACE1, 0xFFFF], dtype=np.uint64)
    seq = lfsr.states_sequence(seeds, 16, 5)
    for row, seed in zip(seq, seeds.tolist(), strict=True):
        s = seed
        for v in row:
            s = lfsr.step_int(s, 16)
            assert int(v) == s


def test_lfsr_values_are_exact_dyadics_in_open_interval() -> None:
    vals = lfsr.uniform_values(np.arange(1, 256, dtype=np.uint64), 8, 24).astype(np.float64)
    assert vals.min() > -1 and vals.max() < 1
    assert np.all(vals * 128 == np.round(vals * 128))  # multiples of 2^(1-K)
    with pytest.raises(ValueError):
        lfsr.states_sequence(np.array([0], dtype=np.uint64), 8, 3)
    with pytest.raises(ValueError):
        lfsr.tap_mask(40)


def _cfg(**kw) -> seedlm.SeedLMConfig:
    base = {"lfsr_bits": 8, "search": "exhaustive", "seed_chunk": 64, "block_chunk": 16}
    base.update(kw)
    return seedlm.SeedLMConfig(**base)


def test_known_answer_representable_block_is_found_exactly() -> None:
    """A block built from seed 77, codes (3, -5, 7) and exponent -6 has a zero-error seed."""
    cfg = _cfg()
    u = lfsr.uniform_values(np.array([77], dtype=np.uint64), 8, 24).reshape(8, 3)
    w = (u.astype(np.float64) @ np.array([3.0, -5.0, 7.0]) * 2.0**-6).astype(np.float32)
    blocks = torch.from_numpy(w[None, :])
    tables = seedlm.tables_for(cfg, CPU)
    e_lo, e_hi = seedlm.exponent_range(float(np.abs(w).max()), cfg.exponent_bits)
    for search in ("exhaustive", "pruned"):
        res = seedlm.search(blocks, dataclasses.replace(cfg, search=search), tables, e_lo, e_hi)
        assert float(res.errors[0]) == 0.0
        table = seedlm.basis_table(8, 8, 3)
        seed = int(res.seeds[0])
        recon = seedlm.reconstruct(
            table[[seed - 1]], res.codes.numpy().astype(int), res.exponents.numpy().astype(int)
        )
        np.testing.assert_array_equal(recon[0], w)


def test_decoded_block_regenerates_bit_for_bit_from_its_seed() -> None:
    g = torch.Generator().manual_seed(3)
    w = torch.randn(12, 20, generator=g) * 0.05
    rec = seedlm.encode("w", w, {"lfsr_bits": 8, "search": "pruned", "prune_top": 16})
    decoded = seedlm.decode(rec).numpy().reshape(-1)
    _cfg_used, seeds, codes, exps = seedlm.decode_parts(rec)
    assert decoded.size == w.numel()
    for i in range(seeds.size):
        # Independent of the decoder's cached table: step the LFSR from the stored seed.
        u = lfsr.uniform_values(np.array([seeds[i]], dtype=np.uint64), 8, 24).reshape(8, 3)
        block = (u.astype(np.float64) @ codes[i].astype(np.float64)) * 2.0 ** float(exps[i])
        expected = block.astype(np.float32)
        got = decoded[i * 8 : (i + 1) * 8]
        assert got.tobytes() == expected[: got.size].tobytes()


def test_exhaustive_search_finds_the_brute_force_optimum() -> None:
    cfg = _cfg()
    g = np.random.default_rng(0)
    blocks = (g.standard_normal((6, 8)) * 0.02).astype(np.float32)
    e_lo, e_hi = seedlm.exponent_range(float(np.abs(blocks).max()), cfg.exponent_bits)
    res = seedlm.search_exhaustive(
        torch.from_numpy(blocks), cfg, seedlm.tables_for(cfg, CPU), e_lo, e_hi
    )
    got = seed_search_bench.exact_errors(blocks, res, cfg)
    ref = seed_search_bench.brute_force_min(blocks, cfg, e_lo, e_hi)
    np.testing.assert_allclose(got, ref, rtol=1e-4)


def test_pruned_search_with_every_seed_is_the_exhaustive_search() -> None:
    cfg = _cfg(prune_top=255)
    g = torch.Generator().manual_seed(1)
    blocks = torch.randn(40, 8, generator=g) * 0.02
    tables = seedlm.tables_for(cfg, CPU)
    e_lo, e_hi = seedlm.exponent_range(float(blocks.abs().max()), cfg.exponent_bits)
    ex = seedlm.search_exhaustive(blocks, cfg, tables, e_lo, e_hi)
    pr = seedlm.search_pruned(blocks, dataclasses.replace(cfg, search="pruned"), tables, e_lo, e_hi)
    err_ex = seed_search_bench.exact_errors(blocks.numpy(), ex, cfg)
    err_pr = seed_search_bench.exact_errors(blocks.numpy(), pr, cfg)
    np.testing.assert_allclose(err_pr, err_ex, rtol=1e-5)
    assert (ex.seeds == pr.seeds).float().mean() > 0.9  # only float ties may differ


def test_records_round_trip_with_negative_codes() -> None:
    cfg = _cfg(lfsr_bits=12)
    seeds = np.array([1, 4095, 77, 2048])
    codes = np.array([[-8, 7, 0], [1, -1, -8], [7, 7, 7], [-3, 2, -5]])
    exps = np.array([-20, -5, -12, -20])
    data = seedlm.pack_records(seeds, codes, exps, cfg, e_lo=-20)
    assert len(data) == (4 * cfg.record_bits + 7) // 8
    s2, c2, e2 = seedlm.unpack_records(data, 4, cfg, e_lo=-20)
    np.testing.assert_array_equal(s2, seeds)
    np.testing.assert_array_equal(c2, codes)
    np.testing.assert_array_equal(e2, exps)


def test_paper_defaults_are_four_bits_per_weight_and_measured_exactly() -> None:
    assert seedlm.SeedLMConfig().bits_per_weight == 4.0
    w = torch.randn(16, 8) * 0.02
    rec = seedlm.encode("w", w, {"lfsr_bits": 10, "search": "pruned", "prune_top": 8})
    cfg = seedlm.record_config(rec)
    assert 8 * rec.payload_bytes / w.numel() == pytest.approx(cfg.bits_per_weight)


def test_bad_config_names_the_key_and_corrupt_record_is_refused() -> None:
    with pytest.raises(ForgebenchError, match=r"seedlm\.lfsr_bits"):
        seedlm.SeedLMConfig.from_mapping({"lfsr_bits": 30})
    with pytest.raises(ForgebenchError, match=r"seedlm\.search"):
        seedlm.SeedLMConfig.from_mapping({"search": "greedy"})
    rec = seedlm.encode("w", torch.randn(4, 8) * 0.02, {"lfsr_bits": 6})
    rec.segments["blocks"] = bytes(len(rec.segments["blocks"]))  # all-zero seeds
    with pytest.raises(ArtifactError, match="seed 0"):
        seedlm.decode(rec)


def test_seed_search_benchmark_rows_and_agreement() -> None:
    frame = seed_search_bench.run(
        {
            "lfsr_bits": 8,
            "blocks": 64,
            "rounds": 1,
            "warmup_rounds": 0,
            "prune_top": 32,
            "matmul_size": 128,
            "matmul_repetitions": 2,
            "reference_blocks": 2,
        },
        seed=5,
    )
    assert set(frame["status"]) == {"ok"}
    cases = set(frame["case"])
    assert {"floor", "exhaustive", "pruned"} <= cases
    params = set(frame["params"])
    assert len(params) == 1  # floor and both searches pair up in comparisons
    m = frame.set_index(["case", "metric"])["value"]
    assert m[("floor", "flops_per_pair")] == 142
    assert 0 <= m[("pruned", "seed_agreement")] <= 1
    assert m[("pruned", "error_ratio_mean")] >= 1 - 1e-6
    assert m[("pruned", "agreement_blocks")] == 64
    assert (frame.loc[frame["metric"] == "ns_per_pair", "value"] > 0).all()
