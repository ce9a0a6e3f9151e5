"""compression/seedlm_search: what SeedLM's seed search costs, each search against a
compute floor measured like for like in the same round.

* ``exhaustive`` (seedlm.search_exhaustive) does FLOPS_PER_PAIR floating-point operations
  per (block, seed) pair (:func:`flops_per_pair`). Its ``floor`` runs the search's own
  GEMMs (the fit ``pinv(U) w`` and the reconstruction ``U t``) at the search's shapes over
  the same pairs, and scales that time to FLOPS_PER_PAIR: the time a pair would take if
  all its work ran at the rate GEMMs of these shapes reach here.
* ``bounded`` (seedlm.search_bounded, the default: exact) ranks every pair by its
  least-squares error in one GEMM (2 F FLOPs, F = C(C+1)/2 features) and evaluates
  only the pairs that can still win (``evaluated_share`` of them). Its own floor,
  ``bounded_floor``, runs the ranking GEMM at the search's shapes over the same pairs and
  scales that time to the search's FLOP count, 2 F per ranked pair plus FLOPS_PER_PAIR
  per evaluated pair. Compared on ``ns_per_evaluated_pair`` (time / evaluated pairs, the
  same divisor on both sides); beside it, ``ns_per_pair`` of the full seed space against
  the exhaustive ``floor``.

A floor is timed as its search is, once per round over the same blocks (a fastest-of-n
floor would be favoured under load). Every case runs once per round, in a seeded random
order, so each round pairs all four (a comparison pairs rows by round). Every case gets
the same params. Before any timing counts, the exhaustive result of the first
``reference_blocks`` blocks is checked against a float64 brute force over every seed, and
the bounded search against the exhaustive one on every block (seeds, and errors by the
exact decoder): a miss marks the case's rows ``mismatch``. ``seedlm.search_pruned`` (a
top-k heuristic) is no longer timed here.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from forgebench.compression import seedlm
from forgebench.errors import ForgebenchError
from forgebench.record import Recorder, status_for, utcnow

BENCHMARK_VERSION = 2
SUITE = "compression"
NAME = "seedlm_search"
KEY = "suites.compression.benchmarks.seedlm_search"

log = logging.getLogger(__name__)


def flops_per_pair(block_size: int, latent_dim: int) -> int:
    """Floating-point operations of one exhaustive (block, seed) pair, C = block_size,
    P = latent_dim, a multiply-add counted as 2:

    * fit t = pinv(U) w: 2 P C
    * quantise: |t|, running max, divide, round, clamp (2) per coefficient (6 P), plus
      max / qmax, log2, ceil, exp2 for the exponent (4)
    * reconstruct U (q 2^e): 2 P C (the scaling folded in)
    * compare: difference, square, sum over C: 3 C

    For C=8, P=3: 48 + 22 + 48 + 24 = 142.
    """
    c, p = block_size, latent_dim
    return 4 * p * c + 6 * p + 4 + 3 * c


def ranking_flops_per_pair(block_size: int) -> int:
    """FLOPs of ranking one pair by LS error: a dot product over F = C(C+1)/2 features."""
    return block_size * (block_size + 1)


def exhaustive_gemm_seconds(
    blocks: torch.Tensor, cfg: seedlm.SeedLMConfig, tables: seedlm.SeedTables
) -> float:
    """Seconds of the exhaustive search's GEMMs alone, same chunks and shapes, every pair:
    the fit (S_c P x C) @ (C x B_c) and the batched reconstruction (S_c, C, P) @ (S_c, P,
    B_c); 4 P C FLOPs a pair."""
    c, p, s_total = cfg.block_size, cfg.latent_dim, cfg.n_seeds
    dev = tables.device
    t0 = time.perf_counter()
    for b0 in range(0, blocks.shape[0], cfg.block_chunk):
        wt = blocks[b0 : b0 + cfg.block_chunk].to(dev, torch.float32).T.contiguous()
        b = wt.shape[1]
        for s0 in range(0, s_total, cfg.seed_chunk):
            s1 = min(s_total, s0 + cfg.seed_chunk)
            t = (tables.pinv[s0:s1].reshape(-1, c) @ wt).view(s1 - s0, p, b)
            torch.bmm(tables.basis[s0:s1], t)
    _sync(dev)
    return time.perf_counter() - t0


def ranking_gemm_seconds(
    blocks: torch.Tensor, cfg: seedlm.SeedLMConfig, tables: seedlm.SeedTables
) -> float:
    """Seconds of the bounded search's ranking GEMMs alone, same chunks and shapes:
    (B_c x F) @ (F x S) over every pair."""
    dev = tables.device
    chunk = seedlm.ranking_chunk(cfg)
    feats = [
        seedlm.features(blocks[b0 : b0 + chunk].to(dev, torch.float32), tables.triu)
        for b0 in range(0, blocks.shape[0], chunk)
    ]
    _sync(dev)
    t0 = time.perf_counter()
    for f in feats:
        f @ tables.proj_features.T
    _sync(dev)
    return time.perf_counter() - t0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def sample_blocks(cfg: Mapping[str, Any], block_size: int, count: int, seed: int) -> np.ndarray:
    """``count`` blocks of real weights (random blocks of a model's quantised layers) or,
    without ``model_dir``, of Gaussian weights with std 0.02 (a typical init scale)."""
    rng = np.random.default_rng(seed)
    model_dir = str(cfg.get("model_dir", "") or "")
    if not model_dir:
        return (rng.standard_normal((count, block_size)) * 0.02).astype(np.float32)
    from forgebench.compression.compress_model import load_state_dict
    from forgebench.compression.metrics import is_quantised

    path = Path(model_dir)
    if not path.is_dir():
        raise ForgebenchError(
            f"suites.compression.benchmarks.seedlm_search.model_dir: {path} is not a directory"
        )
    state = load_state_dict(path)
    pools = [
        t.detach().float().reshape(-1, block_size).numpy()
        for n, t in state.items()
        if is_quantised(n, t) and t.numel() % block_size == 0
    ]
    if not pools:
        raise ForgebenchError(f"seedlm_search.model_dir: {path} has no quantisable layers")
    allb = np.concatenate(pools)
    return allb[rng.choice(allb.shape[0], size=count, replace=False)]


def exact_errors(
    blocks: np.ndarray, res: seedlm.SearchResult, cfg: seedlm.SeedLMConfig
) -> np.ndarray:
    """Squared error of each block's decoded reconstruction (the decoder's exact float64)."""
    table = seedlm.basis_table(cfg.lfsr_bits, cfg.block_size, cfg.latent_dim)
    seeds = res.seeds.cpu().numpy()
    codes, exps = res.codes.cpu().numpy(), res.exponents.cpu().numpy()
    recon = seedlm.reconstruct(table[seeds - 1], codes, exps)
    return ((recon.astype(np.float64) - blocks.astype(np.float64)) ** 2).sum(axis=1)


def brute_force_min(
    blocks: np.ndarray, cfg: seedlm.SeedLMConfig, e_lo: int, e_hi: int
) -> np.ndarray:
    """Smallest squared error over every seed, in float64 numpy, one block at a time."""
    table = seedlm.basis_table(cfg.lfsr_bits, cfg.block_size, cfg.latent_dim).astype(np.float64)
    pinv = np.linalg.pinv(table)  # (S, P, C)
    out = np.empty(blocks.shape[0])
    for i, w in enumerate(blocks.astype(np.float64)):
        t = pinv @ w  # (S, P)
        amax = np.abs(t).max(axis=1)
        with np.errstate(divide="ignore"):
            e = np.ceil(np.log2(amax / cfg.qmax))
        e = np.clip(np.nan_to_num(e, nan=e_lo, neginf=e_lo, posinf=e_hi), e_lo, e_hi)
        q = np.clip(np.round(t / np.exp2(e)[:, None]), cfg.qmin, cfg.qmax)
        recon = np.einsum("scp,sp->sc", table, q) * np.exp2(e)[:, None]
        out[i] = ((recon - w) ** 2).sum(axis=1).min()
    return out


CASES = ("floor", "exhaustive", "bounded_floor", "bounded")


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Time exhaustive and bounded seed search, each against its like-for-like floor.

    cfg keys: lfsr_bits (16), block_size (8), latent_dim (3), coeff_bits (4),
    exponent_bits (4), blocks (384), bound_first (32), rounds (6), warmup_rounds (1),
    reference_blocks (4), seed_chunk (1024), block_chunk (128), device (cpu), model_dir
    ("": Gaussian blocks).
    """
    s_cfg = seedlm.SeedLMConfig(
        block_size=int(cfg.get("block_size", 8)),
        latent_dim=int(cfg.get("latent_dim", 3)),
        lfsr_bits=int(cfg.get("lfsr_bits", 16)),
        coeff_bits=int(cfg.get("coeff_bits", 4)),
        exponent_bits=int(cfg.get("exponent_bits", 4)),
        bound_first=int(cfg.get("bound_first", 32)),
        seed_chunk=int(cfg.get("seed_chunk", 1024)),
        block_chunk=int(cfg.get("block_chunk", 128)),
        device=str(cfg.get("device", "cpu")),
    )
    s_cfg.validate(KEY)
    n_blocks = int(cfg.get("blocks", 384))
    rounds = int(cfg.get("rounds", 6))
    warmup_rounds = int(cfg.get("warmup_rounds", 1))
    n_ref = int(cfg.get("reference_blocks", 4))
    device = seedlm.select_device(s_cfg.device, f"{KEY}.device")
    fpp = flops_per_pair(s_cfg.block_size, s_cfg.latent_dim)
    rpp = ranking_flops_per_pair(s_cfg.block_size)
    pairs = n_blocks * s_cfg.n_seeds
    params = {
        **{k: v for k, v in s_cfg.as_params().items() if k not in ("search", "prune_top")},
        "device": str(device),
        "blocks": n_blocks,
        "seed_space": s_cfg.n_seeds,
        "flops_per_pair": fpp,
        "ranking_flops_per_pair": rpp,
        "block_source": str(cfg.get("model_dir", "") or "gaussian(std=0.02)"),
        "torch_threads": torch.get_num_threads(),
    }
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    blocks_np = sample_blocks(cfg, s_cfg.block_size, n_blocks, seed)
    blocks = torch.from_numpy(blocks_np)
    e_lo, e_hi = seedlm.exponent_range(float(np.abs(blocks_np).max()), s_cfg.exponent_bits)
    log.info("seedlm_search: building tables for K=%d on %s", s_cfg.lfsr_bits, device)
    tables = seedlm.tables_for(s_cfg, device)
    searches = {
        "exhaustive": replace(s_cfg, search="exhaustive"),
        "bounded": replace(s_cfg, search="bounded"),
    }
    floors = {"floor": exhaustive_gemm_seconds, "bounded_floor": ranking_gemm_seconds}
    rng = random.Random(seed)
    status = dict.fromkeys(CASES, "ok")
    results: dict[str, seedlm.SearchResult] = {}
    rec.add("floor", params, "flops_per_pair", "flop", False, float(fpp))
    evaluated = math.nan  # pairs the bounded search evaluated (the same every round)

    for rnd in range(warmup_rounds + rounds):
        warm = rnd < warmup_rounds
        order = list(CASES)
        rng.shuffle(order)
        seconds: dict[str, tuple[float, str, Any]] = {}
        for case in order:
            started = utcnow()
            try:
                if case in floors:
                    elapsed = floors[case](blocks, s_cfg, tables)
                else:
                    _sync(device)
                    t0 = time.perf_counter()
                    res = seedlm.search(blocks, searches[case], tables, e_lo, e_hi)
                    _sync(device)
                    elapsed = time.perf_counter() - t0
                    results.setdefault(case, res)
                    if case == "bounded":
                        evaluated = float(res.evaluated)
            except Exception as exc:
                log.warning("seedlm_search %s round %d failed: %r", case, rnd, exc)
                seconds[case] = (math.nan, status_for(exc), started)
                continue
            seconds[case] = (elapsed, "ok", started)
        if rnd == 0:  # correctness before any timing counts
            status.update(_check(results, blocks_np, s_cfg, e_lo, e_hi, n_ref, rec, params))
        rows = _round_rows(seconds, evaluated, pairs, fpp, rpp, s_cfg)
        for case, metric, unit, hib, value in rows:
            _elapsed, st, started = seconds[case]
            st = status[case] if st == "ok" else st
            if st == "ok" and not math.isfinite(value):  # a side it depends on failed
                st = "skipped"
            rec.add(
                case,
                params,
                metric,
                unit,
                hib,
                value if st == "ok" else math.nan,
                repetition=rnd,
                warmup=warm,
                status=st,
                started_at=started,
            )
        log.info(
            "seedlm_search round %d: %s",
            rnd,
            ", ".join(f"{c} {v:.3g} {u}" for c, m, u, _h, v in rows if m == "ns_per_pair"),
        )
    return rec.frame()


def _round_rows(
    seconds: Mapping[str, tuple[float, str, Any]],
    evaluated: float,
    pairs: int,
    fpp: int,
    rpp: int,
    cfg: seedlm.SeedLMConfig,
) -> list[tuple[str, str, str, bool, float]]:
    """(case, metric, unit, higher_is_better, value) of one round's timings."""
    sec = {case: v[0] for case, v in seconds.items()}
    exh_gemm_flops = 4 * cfg.latent_dim * cfg.block_size * pairs
    bounded_flops = rpp * pairs + fpp * evaluated
    floor_s = sec["floor"] * fpp * pairs / exh_gemm_flops
    bfloor_s = sec["bounded_floor"] * bounded_flops / (rpp * pairs)
    return [
        ("floor", "ns_per_pair", "ns", False, floor_s / pairs * 1e9),
        ("floor", "gemm_gflops", "GFLOP/s", True, exh_gemm_flops / sec["floor"] / 1e9),
        ("exhaustive", "ns_per_pair", "ns", False, sec["exhaustive"] / pairs * 1e9),
        ("bounded_floor", "ns_per_evaluated_pair", "ns", False, bfloor_s / evaluated * 1e9),
        ("bounded_floor", "ns_per_pair", "ns", False, bfloor_s / pairs * 1e9),
        ("bounded_floor", "gemm_gflops", "GFLOP/s", True, rpp * pairs / sec["bounded_floor"] / 1e9),
        ("bounded", "ns_per_evaluated_pair", "ns", False, sec["bounded"] / evaluated * 1e9),
        ("bounded", "ns_per_pair", "ns", False, sec["bounded"] / pairs * 1e9),
        ("bounded", "evaluated_share", "ratio", False, evaluated / pairs),
    ]


def _check(
    results: Mapping[str, seedlm.SearchResult],
    blocks: np.ndarray,
    cfg: seedlm.SeedLMConfig,
    e_lo: int,
    e_hi: int,
    n_ref: int,
    rec: Recorder,
    params: Mapping[str, Any],
) -> dict[str, str]:
    """Statuses of both searches and the agreement rows of bounded against exhaustive."""
    status = {"exhaustive": "ok", "bounded": "ok"}
    ex, bo = results.get("exhaustive"), results.get("bounded")
    if ex is not None and n_ref:
        ref = brute_force_min(blocks[:n_ref], cfg, e_lo, e_hi)
        got = exact_errors(blocks[:n_ref], _head(ex, n_ref), cfg)
        if not np.allclose(got, ref, rtol=1e-4, atol=1e-12):
            log.warning("exhaustive search missed the optimum: %s vs %s", got, ref)
            status["exhaustive"] = "mismatch"
    if ex is None or bo is None:
        return status
    err_ex = exact_errors(blocks, ex, cfg)
    err_bo = exact_errors(blocks, bo, cfg)
    same = (ex.seeds.cpu() == bo.seeds.cpu()).numpy()
    tied = np.isclose(err_bo, err_ex, rtol=1e-6, atol=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(err_ex > 0, err_bo / err_ex, 1.0)
    rows = {
        "seed_agreement": (float(same.mean()), "ratio", True),
        "error_ratio_max": (float(ratio.max()), "ratio", False),
        "worse_share": (float((err_bo > err_ex * (1 + 1e-6)).mean()), "ratio", False),
        "agreement_blocks": (float(blocks.shape[0]), "count", True),
    }
    for metric, (value, unit, hib) in rows.items():
        rec.add("bounded", params, metric, unit, hib, value)
    log.info(
        "bounded vs exhaustive on %d blocks: %.1f%% same seed, error ratio max %.6f",
        blocks.shape[0],
        100 * same.mean(),
        ratio.max(),
    )
    if np.any(~same & ~tied):
        log.warning("bounded search differs from the exhaustive one on %d blocks", (~same).sum())
        status["bounded"] = "mismatch"
    if np.any(err_bo < err_ex * (1 - 1e-5) - 1e-12):
        log.warning("bounded search beat the exhaustive one: the exhaustive search is wrong")
        status["exhaustive"] = "mismatch"
    return status


def _head(res: seedlm.SearchResult, n: int) -> seedlm.SearchResult:
    return seedlm.SearchResult(res.seeds[:n], res.codes[:n], res.exponents[:n], res.errors[:n])
