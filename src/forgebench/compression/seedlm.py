"""SeedLM (Shafipour et al., Apple 2024): weights stored as seeds of a pseudo-random generator.

Each block of C consecutive weights w (row-major over the flattened tensor, zero-padded at
the end) is approximated as w ~ U(s) t, where U(s) is the C x P matrix an LFSR started at
seed s generates (forgebench.compression.lfsr; element (c, p) is the value after
c * P + p + 1 steps) and t holds P coefficients stored as b-bit signed integers q times a
shared power of two 2^e. The encoder searches every non-zero seed (2^K - 1 of them), fits t
by least squares, quantises it, reconstructs and keeps the seed with the smallest squared
error; ties go to the smallest seed. A block costs K + P b + E bits (paper defaults C=8,
P=3, K=16, b=4, E=4: 32 bits, 4 bits/weight), packed back to back.

Not the paper's bitstream: our LFSR shifts the other way, uses other primitive
polynomials for K = 12, 13, 14 and 19, and divides states by 2^(K-1), not 2^(K-1) - 1
(forgebench.compression.lfsr lists each difference; tests pin them). A decoder written
from the paper does not read these artifacts; one written from lfsr.py does, bit for bit.

The E-bit exponent is an offset from a per-tensor floor ``e_lo`` kept in the header:
e in [e_lo, e_lo + 2^E - 1] with e_lo = ceil(log2 max|W|) + 2 - (2^E - 1), so coefficients
up to 7 * 4 * 2^ceil(log2 max|W|) are representable; a block needing less than the floor's
resolution gets the floor.

Three searches give the same kind of answer:

* ``exhaustive``: for every (block, seed) pair fit (pinv(U) w), quantise, reconstruct and
  compare, vectorised over chunks of seeds and blocks (one GEMM, one batched GEMM and
  elementwise work per chunk).
* ``bounded`` (the default): the exhaustive search's answer for a fraction of its work.
  A block's unquantised least-squares error for seed s, ||w||^2 - w^T H(s) w with H(s)
  the projection onto U(s)'s columns, is a lower bound on its quantised error, and
  w^T H w is linear in the C(C+1)/2 products w_i w_j, so ranking every seed is one GEMM
  of the blocks' quadratic features against a precomputed (2^K - 1) x C(C+1)/2 table.
  Seeds are then evaluated best-ranked first until no seed left has an LS error below
  the best quantised error found (:func:`search_bounded`). At K = 16, on 256 Gaussian
  and 256 real (SmolLM2) blocks, every block stopped after its first 32 seeds;
  seed_search_bench records the evaluated share each run.
* ``pruned``: the same ranking, then only the ``prune_top`` best seeds evaluated: a
  heuristic with no guarantee, kept for comparison.

All run in torch on the configured device (``auto``: CUDA when present). Decoding does
its arithmetic in float64, where U q 2^e is exact (U's entries have at most K significant
bits), then rounds to float32: any decoder reproduces a block bit for bit from its seed.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from forgebench.compression import lfsr
from forgebench.compression.artifact import ArtifactError, TensorRecord, pack_bits, unpack_bits
from forgebench.compression.method_config import SeedLMConfig
from forgebench.errors import ForgebenchError

log = logging.getLogger(__name__)


def select_device(name: str, key: str = "seedlm.device") -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ForgebenchError(f"{key}: 'cuda' requested but torch sees no CUDA device; use auto")
    return torch.device(name)


@functools.lru_cache(maxsize=4)
def basis_table(bits: int, block_size: int, latent_dim: int) -> np.ndarray:
    """U(s) for every seed s = 1 .. 2^K - 1, as float32 (2^K - 1, C, P); row s - 1 is seed s."""
    seeds = np.arange(1, 1 << bits, dtype=np.uint64)
    vals = lfsr.uniform_values(seeds, bits, block_size * latent_dim)
    out = vals.reshape(-1, block_size, latent_dim)
    out.setflags(write=False)
    return out


class SeedTables:
    """Per-seed tables of the search on one device: basis, pseudo-inverse, projection features."""

    def __init__(self, cfg: SeedLMConfig, device: torch.device) -> None:
        c, p = cfg.block_size, cfg.latent_dim
        u64 = torch.from_numpy(basis_table(cfg.lfsr_bits, c, p).copy()).double()
        pinv64 = torch.linalg.pinv(u64)  # (S, P, C); rank-deficient bases are handled
        proj = u64 @ pinv64  # (S, C, C): projection onto the basis' column space
        iu = torch.triu_indices(c, c)
        weight = torch.where(iu[0] == iu[1], 1.0, 2.0).double()
        self.triu = iu.to(device)
        self.basis = u64.float().to(device)
        self.pinv = pinv64.float().to(device)
        self.proj_features = (proj[:, iu[0], iu[1]] * weight).float().to(device)  # (S, F)
        self.device = device


@functools.lru_cache(maxsize=2)
def _tables(cfg_key: tuple[int, int, int], device: str) -> SeedTables:
    bits, c, p = cfg_key
    cfg = SeedLMConfig(block_size=c, latent_dim=p, lfsr_bits=bits)
    return SeedTables(cfg, torch.device(device))


def tables_for(cfg: SeedLMConfig, device: torch.device) -> SeedTables:
    """Cached tables (building K=16 takes about a second)."""
    return _tables((cfg.lfsr_bits, cfg.block_size, cfg.latent_dim), str(device))


def quantise(
    t: torch.Tensor, dim: int, e_lo: int, e_hi: int, qmin: int, qmax: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients -> (integer codes as floats, shared exponent) along ``dim``.

    e = ceil(log2(max|t| / qmax)) clamped to [e_lo, e_hi]; q = clamp(round(t / 2^e)).
    """
    amax = t.abs().amax(dim=dim)
    e = torch.ceil(torch.log2(amax / qmax))
    e = torch.nan_to_num(e, nan=e_lo, neginf=e_lo, posinf=e_hi).clamp_(e_lo, e_hi)
    q = torch.round(t / torch.exp2(e).unsqueeze(dim)).clamp_(qmin, qmax)
    return q, e


@dataclass
class SearchResult:
    """Per block: chosen seed (1-based), integer coefficients, exponent, search error."""

    seeds: torch.Tensor  # (N,) int64
    codes: torch.Tensor  # (N, P) float (integers)
    exponents: torch.Tensor  # (N,) float (integers)
    errors: torch.Tensor  # (N,) float32 squared error as the search computed it
    evaluated: int = 0  # (block, seed) pairs given the full quantised evaluation


def exponent_range(max_abs: float, exponent_bits: int) -> tuple[int, int]:
    """(e_lo, e_hi) of a tensor whose largest weight magnitude is ``max_abs``."""
    top = math.ceil(math.log2(max_abs)) + 2 if max_abs > 0 else 0
    return top - ((1 << exponent_bits) - 1), top


def search_exhaustive(
    blocks: torch.Tensor, cfg: SeedLMConfig, tables: SeedTables, e_lo: int, e_hi: int
) -> SearchResult:
    """Fit, quantise, reconstruct and compare every (block, seed) pair; keep the best seed."""
    n, c = blocks.shape
    p = cfg.latent_dim
    s_total = cfg.n_seeds
    dev = tables.device
    out_seed = torch.empty(n, dtype=torch.int64, device=dev)
    out_q = torch.empty(n, p, device=dev)
    out_e = torch.empty(n, device=dev)
    out_err = torch.empty(n, device=dev)
    for b0 in range(0, n, cfg.block_chunk):
        w = blocks[b0 : b0 + cfg.block_chunk].to(dev, torch.float32)
        b = w.shape[0]
        wt = w.T.contiguous()  # (C, B)
        cols = torch.arange(b, device=dev)
        best_err = torch.full((b,), float("inf"), device=dev)
        best_idx = torch.zeros(b, dtype=torch.int64, device=dev)
        best_q = torch.zeros(b, p, device=dev)
        best_e = torch.zeros(b, device=dev)
        for s0 in range(0, s_total, cfg.seed_chunk):
            s1 = min(s_total, s0 + cfg.seed_chunk)
            pinv = tables.pinv[s0:s1]
            t = (pinv.reshape(-1, c) @ wt).view(s1 - s0, p, b)
            q, e = quantise(t, 1, e_lo, e_hi, cfg.qmin, cfg.qmax)
            recon = torch.bmm(tables.basis[s0:s1], q * torch.exp2(e).unsqueeze(1))
            err = (recon - wt).square_().sum(dim=1)  # (s, B)
            m, a = err.min(dim=0)
            better = m < best_err
            if bool(better.any()):
                best_err = torch.where(better, m, best_err)
                best_idx = torch.where(better, a + s0, best_idx)
                best_q = torch.where(better[:, None], q[a, :, cols], best_q)
                best_e = torch.where(better, e[a, cols], best_e)
        sl = slice(b0, b0 + b)
        out_seed[sl], out_q[sl], out_e[sl], out_err[sl] = best_idx + 1, best_q, best_e, best_err
    return SearchResult(out_seed, out_q, out_e, out_err, n * s_total)


def features(w: torch.Tensor, triu: torch.Tensor) -> torch.Tensor:
    """The C(C+1)/2 products w_i w_j (i <= j) of each block: (B, F)."""
    return w[:, triu[0]] * w[:, triu[1]]


def candidate_seeds(
    blocks: torch.Tensor, tables: SeedTables, top: int, s0: int = 0, s1: int | None = None
) -> torch.Tensor:
    """Indices (0-based, ascending) of the ``top`` seeds with the smallest unquantised
    least-squares error for each block: (B, top)."""
    energy = features(blocks, tables.triu) @ tables.proj_features[s0:s1].T  # (B, S)
    idx = energy.topk(min(top, energy.shape[1]), dim=1, sorted=False).indices
    return idx.sort(dim=1).values + s0


def evaluate_candidates(
    w: torch.Tensor, idx: torch.Tensor, cfg: SeedLMConfig, tables: SeedTables, e_lo: int, e_hi: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full quantised evaluation of candidate seeds per block; best (idx, q, e, err)."""
    # Broadcast multiply-and-sum: torch's batched matmul of tiny matrices is far slower.
    t = (tables.pinv[idx] * w[:, None, None, :]).sum(dim=-1)  # (B, m, P)
    q, e = quantise(t, 2, e_lo, e_hi, cfg.qmin, cfg.qmax)
    qs = q * torch.exp2(e).unsqueeze(2)
    recon = (tables.basis[idx] * qs[:, :, None, :]).sum(dim=-1)  # (B, m, C)
    err = (recon - w[:, None, :]).square_().sum(dim=-1)  # (B, m)
    m, a = err.min(dim=1)
    rows = torch.arange(w.shape[0], device=w.device)
    return idx[rows, a], q[rows, a], e[rows, a], m


def search_pruned(
    blocks: torch.Tensor, cfg: SeedLMConfig, tables: SeedTables, e_lo: int, e_hi: int
) -> SearchResult:
    """Rank all seeds by unquantised LS error (one GEMM), evaluate the top ``prune_top``."""
    n = blocks.shape[0]
    dev = tables.device
    chunk = ranking_chunk(cfg)
    seeds, codes, exps, errs = [], [], [], []
    for b0 in range(0, n, chunk):
        w = blocks[b0 : b0 + chunk].to(dev, torch.float32)
        idx = candidate_seeds(w, tables, cfg.prune_top)
        i, q, e, m = evaluate_candidates(w, idx, cfg, tables, e_lo, e_hi)
        seeds.append(i + 1)
        codes.append(q)
        exps.append(e)
        errs.append(m)
    evaluated = n * min(cfg.prune_top, cfg.n_seeds)
    return SearchResult(
        torch.cat(seeds), torch.cat(codes), torch.cat(exps), torch.cat(errs), evaluated
    )


def ranking_chunk(cfg: SeedLMConfig) -> int:
    """Blocks per ranking step: the (B, S) energy matrix holds about 4M floats whatever K
    is, so a small seed space is not paid for in per-step overhead."""
    return max(1, (1 << 22) // cfg.n_seeds)


# Relative slack (of ||w||^2) on the least-squares bound: the float32 ranking GEMM's
# rounding error is below 4e-5 ||w||^2 (36 products, each at most 2 w_i w_j), so no seed
# whose true LS error is below the best quantised error is skipped for rounding.
BOUND_SLACK = 1e-4


class _BoundedBest:
    """Best (error, seed, codes, exponent) so far per block of the bounded search."""

    def __init__(self, n: int, latent_dim: int, device: torch.device) -> None:
        self.err = torch.full((n,), math.inf, device=device)
        self.idx = torch.zeros(n, dtype=torch.int64, device=device)
        self.q = torch.zeros(n, latent_dim, device=device)
        self.e = torch.zeros(n, device=device)

    def update(
        self,
        rows: torch.Tensor,
        idx: torch.Tensor,
        w: torch.Tensor,
        seen: torch.Tensor | None,
        cfg: SeedLMConfig,
        tables: SeedTables,
        e_lo: int,
        e_hi: int,
    ) -> int:
        """Evaluate seeds ``idx`` (duplicates allowed) of blocks ``rows``, marking them in
        ``seen`` (None: nothing evaluated before); the count of pairs newly evaluated."""
        fresh = _first_occurrence(idx)
        if seen is not None:
            fresh &= ~seen[rows[:, None], idx]
            seen[rows[:, None], idx] = True
        i, q, e, m = evaluate_candidates(w, idx.sort(dim=1).values, cfg, tables, e_lo, e_hi)
        better = (m < self.err[rows]) | ((m == self.err[rows]) & (i < self.idx[rows]))
        upd = rows[better]
        self.err[upd], self.idx[upd] = m[better], i[better]
        self.q[upd], self.e[upd] = q[better], e[better]
        return int(fresh.sum())


def _first_occurrence(idx: torch.Tensor) -> torch.Tensor:
    """Per row, True where the value has not appeared earlier in the row."""
    order = idx.sort(dim=1, stable=True)
    dup_sorted = torch.zeros_like(idx, dtype=torch.bool)
    dup_sorted[:, 1:] = order.values[:, 1:] == order.values[:, :-1]
    out = torch.empty_like(dup_sorted)
    out.scatter_(1, order.indices, ~dup_sorted)
    return out


def search_bounded(
    blocks: torch.Tensor, cfg: SeedLMConfig, tables: SeedTables, e_lo: int, e_hi: int
) -> SearchResult:
    """The exhaustive search's answer, evaluating only seeds that can still win.

    A quantised reconstruction U q 2^e lies in U's column space, so its error is never
    below the block's least-squares error for that seed. All seeds are ranked by LS error
    (the pruned search's GEMM); the ``bound_first`` best are evaluated, then, in rounds
    of at most 4x as many, the best not yet evaluated among those whose LS error is within
    the best quantised error so far (plus BOUND_SLACK ||w||^2), until none is left. Seeds
    are marked as evaluated, so ties in the ranking cannot skip one; ties in the error go
    to the smallest seed, as in the exhaustive search.
    """
    n = blocks.shape[0]
    dev = tables.device
    s_total = cfg.n_seeds
    chunk = ranking_chunk(cfg)
    out_seed = torch.ones(n, dtype=torch.int64, device=dev)
    out_q = torch.zeros(n, cfg.latent_dim, device=dev)
    out_e = torch.full((n,), float(e_lo), device=dev)
    out_err = torch.zeros(n, device=dev)
    evaluated = 0
    for b0 in range(0, n, chunk):
        w = blocks[b0 : b0 + chunk].to(dev, torch.float32)
        norm2 = w.square().sum(dim=1)
        # An all-zero block: every seed reconstructs it exactly; the smallest (1) wins,
        # with zero codes at the floor exponent, as the exhaustive search gives.
        rows = torch.nonzero(norm2 > 0).squeeze(1)
        if rows.numel() == 0:
            continue
        w, norm2 = w[rows], norm2[rows]
        # LS error = ||w||^2 - energy: ranking by energy needs no pass over (B, S) more.
        energy = features(w, tables.triu) @ tables.proj_features.T  # (B, S)
        best = _BoundedBest(rows.numel(), cfg.latent_dim, dev)
        k = min(cfg.bound_first, s_total)
        top = energy.topk(min(k + 1, s_total), dim=1, sorted=True)
        active = torch.arange(rows.numel(), device=dev)
        idx = top.indices[:, :k]
        evaluated += best.update(active, idx, w, None, cfg, tables, e_lo, e_hi)
        if k < s_total:  # the (k+1)-th LS error bounds every seed not yet evaluated
            next_ls = norm2 - top.values[:, k]
            active = active[next_ls <= best.err + BOUND_SLACK * norm2]
        else:
            active = active[:0]
        if active.numel():  # most chunks never get here: no B x S mask to clear
            seen = torch.zeros(energy.shape, dtype=torch.bool, device=dev)
            seen.scatter_(1, idx, True)
        while active.numel():
            floor = norm2[active] - best.err[active] - BOUND_SLACK * norm2[active]
            cand = (energy[active] >= floor[:, None]) & ~seen[active]
            has = cand.any(dim=1)
            active, cand = active[has], cand[has]
            if not active.numel():
                break
            k = min(4 * k, s_total)
            take = min(k, int(cand.sum(dim=1).max()))
            vals, idx = torch.where(cand, energy[active], -math.inf).topk(take, dim=1)
            idx = torch.where(vals > -math.inf, idx, idx[:, :1])  # pad with a real candidate
            evaluated += best.update(active, idx, w[active], seen, cfg, tables, e_lo, e_hi)
        sel = rows + b0
        out_seed[sel], out_q[sel], out_e[sel], out_err[sel] = (
            best.idx + 1,
            best.q,
            best.e,
            best.err,
        )
    return SearchResult(out_seed, out_q, out_e, out_err, evaluated)


def search(
    blocks: torch.Tensor, cfg: SeedLMConfig, tables: SeedTables, e_lo: int, e_hi: int
) -> SearchResult:
    fn = {
        "bounded": search_bounded,
        "exhaustive": search_exhaustive,
        "pruned": search_pruned,
    }[cfg.search]
    return fn(blocks, cfg, tables, e_lo, e_hi)


def to_blocks(w: torch.Tensor, block_size: int) -> tuple[torch.Tensor, int]:
    """Flattened, zero-padded (N, C) blocks and the pad length."""
    flat = w.detach().to("cpu", torch.float32).reshape(-1)
    pad = (-flat.numel()) % block_size
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return flat.view(-1, block_size), pad


def reconstruct(basis: np.ndarray, codes: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    """U q 2^e per block in float64 (exact), rounded once to float32: (N, C)."""
    acc = np.einsum("ncp,np->nc", basis.astype(np.float64), codes.astype(np.float64))
    return (acc * np.exp2(exponents.astype(np.float64))[:, None]).astype(np.float32)


def pack_records(
    seeds: np.ndarray, codes: np.ndarray, exponents: np.ndarray, cfg: SeedLMConfig, e_lo: int
) -> bytes:
    """Block records [seed | exponent offset | coefficients, two's complement] packed."""
    k, eb, cb = cfg.lfsr_bits, cfg.exponent_bits, cfg.coeff_bits
    rec = seeds.astype(np.uint64)
    rec |= (exponents.astype(np.int64) - e_lo).astype(np.uint64) << np.uint64(k)
    mask = (1 << cb) - 1
    for i in range(cfg.latent_dim):
        field = (codes[:, i].astype(np.int64) & mask).astype(np.uint64)
        rec |= field << np.uint64(k + eb + i * cb)
    return pack_bits(rec, cfg.record_bits)


def unpack_records(
    data: bytes, count: int, cfg: SeedLMConfig, e_lo: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seeds, codes (N, P) int, exponents) from packed block records."""
    k, eb, cb = cfg.lfsr_bits, cfg.exponent_bits, cfg.coeff_bits
    rec = unpack_bits(data, cfg.record_bits, count)
    seeds = (rec & np.uint64((1 << k) - 1)).astype(np.int64)
    exps = ((rec >> np.uint64(k)) & np.uint64((1 << eb) - 1)).astype(np.int64) + e_lo
    codes = np.empty((count, cfg.latent_dim), dtype=np.int64)
    for i in range(cfg.latent_dim):
        raw = ((rec >> np.uint64(k + eb + i * cb)) & np.uint64((1 << cb) - 1)).astype(np.int64)
        codes[:, i] = np.where(raw >= (1 << (cb - 1)), raw - (1 << cb), raw)
    return seeds, codes, exps


def encode(name: str, w: torch.Tensor, cfg_map: Mapping[str, Any]) -> TensorRecord:
    """Search a seed for every block of ``w`` and pack the block records."""
    cfg = cfg_map if isinstance(cfg_map, SeedLMConfig) else SeedLMConfig.from_mapping(cfg_map)
    device = select_device(cfg.device)
    tables = tables_for(cfg, device)
    blocks, pad = to_blocks(w, cfg.block_size)
    e_lo, e_hi = exponent_range(
        float(blocks.abs().max()) if blocks.numel() else 0.0, cfg.exponent_bits
    )
    res = search(blocks, cfg, tables, e_lo, e_hi)
    payload = pack_records(
        res.seeds.cpu().numpy(), res.codes.cpu().numpy(), res.exponents.cpu().numpy(), cfg, e_lo
    )
    return TensorRecord(
        name=name,
        shape=tuple(w.shape),
        dtype=str(w.dtype).removeprefix("torch."),
        encoding="seedlm",
        segments={"blocks": payload},
        meta={"e_lo": e_lo, "blocks": int(blocks.shape[0]), "pad": pad, **_format(cfg)},
    )


def _format(cfg: SeedLMConfig) -> dict[str, int]:
    return {
        "block_size": cfg.block_size,
        "latent_dim": cfg.latent_dim,
        "lfsr_bits": cfg.lfsr_bits,
        "coeff_bits": cfg.coeff_bits,
        "exponent_bits": cfg.exponent_bits,
    }


def record_config(rec: TensorRecord) -> SeedLMConfig:
    try:
        return SeedLMConfig(**{k: int(rec.meta[k]) for k in _format(SeedLMConfig())})
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"tensor {rec.name}: seedlm metadata incomplete: {exc}") from None


def decode_parts(rec: TensorRecord) -> tuple[SeedLMConfig, np.ndarray, np.ndarray, np.ndarray]:
    """(format, seeds, codes, exponents) stored for a tensor."""
    cfg = record_config(rec)
    count = int(rec.meta["blocks"])
    seeds, codes, exps = unpack_records(rec.segments["blocks"], count, cfg, int(rec.meta["e_lo"]))
    if np.any(seeds == 0):
        raise ArtifactError(f"tensor {rec.name}: seed 0 stored (the LFSR never visits it)")
    return cfg, seeds, codes, exps


def decode(rec: TensorRecord, chunk: int = 1 << 16) -> torch.Tensor:
    """The float32 tensor regenerated from its seeds and coefficients."""
    if rec.encoding != "seedlm" or "blocks" not in rec.segments:
        raise ArtifactError(f"tensor {rec.name}: not a seedlm record")
    cfg, seeds, codes, exps = decode_parts(rec)
    table = basis_table(cfg.lfsr_bits, cfg.block_size, cfg.latent_dim)
    out = np.empty((seeds.size, cfg.block_size), dtype=np.float32)
    for i in range(0, seeds.size, chunk):
        sl = slice(i, i + chunk)
        out[sl] = reconstruct(table[seeds[sl] - 1], codes[sl], exps[sl])
    flat = out.reshape(-1)
    pad = int(rec.meta["pad"])
    if pad:
        flat = flat[:-pad]
    if flat.size != rec.numel:
        raise ArtifactError(
            f"tensor {rec.name}: {flat.size} weights decoded, shape needs {rec.numel}"
        )
    return torch.from_numpy(flat.reshape(rec.shape).copy())


def theoretical_bits(cfg_map: Mapping[str, Any], shape: tuple[int, ...]) -> float:
    """Nominal bits of a tensor: (K + P b + E) / C per weight."""
    cfg = SeedLMConfig.from_mapping(cfg_map)
    return cfg.bits_per_weight * float(np.prod(shape))
