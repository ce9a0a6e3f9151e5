"""VPTQ (Liu et al., Microsoft 2024): vector quantisation of weights with a k-means codebook
fitted under a Hessian-weighted loss.

A 2-D weight W (out x in) is cut into vectors of ``vector_length`` v. With the paper's
layout (``column``) a vector is v consecutive output-channel weights of one input column
j, so all of its entries share the Hessian diagonal h_j = E[x_j^2] of that column
(forgebench.compression.calibration); the ``row`` layout takes v consecutive input-channel
weights of one row, each entry with its own h_j. The codebook of k centroids minimises the
proxy loss sum_n sum_d h_nd (x_nd - c_{a(n),d})^2 by weighted Lloyd iterations: each vector
is assigned to the centroid of least *weighted* distance and each centroid moves to the
h-weighted mean of its vectors (``kmeans_sample`` fits on vectors drawn in proportion to
their weight, see ``weighted_sample``; random initial centroids drawn with a seeded generator,
as the reference code's k-means does; an empty cluster is reseeded at the vector with the
largest weighted error). h is damped, h + damp * mean(h), so a dead input feature still
has a positive weight. An optional residual codebook quantises x - c_{a(n)} the same way.

Stored per tensor: indices packed at ceil(log2 k) bits (artifact.pack_bits) and the
codebooks in ``codebook_dtype`` (float16 as in the paper); the final assignment is made
against the codebook as stored, so decoding reproduces the encoder's reconstruction. Bits
per weight include the codebooks: (N ceil(log2 k) + k v b_c [+ residual]) / weights.

Not implemented from the paper (said here and in params): the GPTQ-style column-by-column
error feedback with the full inverse Hessian, outlier codebooks, per-channel
normalisation and layer-wise fine-tuning. What is implemented is its Hessian-weighted
k-means codebook with optional residual codebook. Three consequences, stated because
they change results:

* damping: ``hessian_damp`` damps the diagonal used as k-means *loss weights*
  (h + damp * mean(h)); the paper's (GPTQ's) damping adds damp * mean(diag H) to the full
  Hessian so that it can be inverted for error feedback, which is not done here;
* no column permutation: the reference code can reorder input columns by their Hessian
  diagonal before quantising (act-order); columns here stay in their stored order, which
  matters only with error feedback, absent here;
* the residual codebook is fitted to x - c_{a(n)} of the first codebook alone, without
  error feedback: the residual error of one column is never compensated in the others.
"""

from __future__ import annotations

import contextlib
import logging
import math
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from forgebench.compression.artifact import ArtifactError, TensorRecord, pack_bits, unpack_bits
from forgebench.compression.method_config import CODEBOOK_DTYPES, LAYOUTS, VPTQConfig
from forgebench.errors import ForgebenchError

log = logging.getLogger(__name__)

#: The codebooks' storage dtypes (method_config.CODEBOOK_DTYPES) as torch dtypes.
_TORCH_DTYPES = {"float16": torch.float16, "float32": torch.float32}


class Calibrated(Mapping[str, Any]):
    """A method config plus the Hessian diagonals VPTQ's encoder reads (by tensor name).

    It reads as the plain config (so headers and params stay JSON), the statistics ride
    along as an attribute: ``encode`` needs them, ``compress_state_dict`` passes the same
    mapping to every tensor's encoder."""

    def __init__(
        self, cfg: Mapping[str, Any], hessian_diag: Mapping[str, torch.Tensor], tokens: int
    ) -> None:
        self._cfg = dict(cfg)
        self.hessian_diag = dict(hessian_diag)
        self.calibration_tokens_used = int(tokens)

    def __getitem__(self, key: str) -> Any:
        return self._cfg[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cfg)

    def __len__(self) -> int:
        return len(self._cfg)


def calibrated(
    method_cfg: Mapping[str, Any],
    model_dir: Any,
    texts: Any,
    key: str = "compression.methods.vptq",
) -> Mapping[str, Any]:
    """``method_cfg`` with the Hessian diagonals of the model at ``model_dir`` measured on
    ``texts`` (calibration text: keep it apart from the perplexity text); unchanged when
    the config turns Hessian weighting off."""
    from forgebench.compression.calibration import calibrate

    cfg = VPTQConfig.from_mapping(method_cfg, key)
    if not cfg.hessian_weighted:
        return method_cfg
    hdiag, tokens = calibrate(
        model_dir,
        list(texts),
        max_tokens=cfg.calibration_tokens,
        context=cfg.calibration_context,
        key=f"{key}.calibration_tokens",
    )
    return Calibrated(method_cfg, hdiag, tokens)


def prepare(
    method_cfg: Mapping[str, Any], model_dir: Any, calibration_texts: Any
) -> Mapping[str, Any]:
    """The hook compress_model calls before encoding: a VPTQ config gets its calibration
    (on the leading calibration texts, enough for ``calibration_tokens``); any other
    method's config is returned unchanged."""
    if str(method_cfg.get("method", "")) != "vptq":
        return method_cfg
    from forgebench.compression.calibration import enough_texts

    name = str(method_cfg.get("name", "vptq"))
    key = f"compression.methods.{name}"
    tokens = VPTQConfig.from_mapping(method_cfg, key).calibration_tokens
    return calibrated(method_cfg, model_dir, enough_texts(list(calibration_texts), tokens), key)


def select_device(name: str, key: str = "vptq.device") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ForgebenchError(f"{key}: 'cuda' requested but torch sees no CUDA device; use auto")
    return torch.device(name)


# ---------------------------------------------------------------- vectors and weights


def _as_2d(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) != 2:
        raise ValueError(f"VPTQ quantises 2-D weights, got shape {list(shape)}")
    return int(shape[0]), int(shape[1])


def vector_count(shape: tuple[int, ...], v: int, layout: str) -> tuple[int, int]:
    """(number of vectors, zero padding per column or row) of a weight of ``shape``."""
    out_f, in_f = _as_2d(shape)
    along, lines = (out_f, in_f) if layout == "column" else (in_f, out_f)
    pad = (-along) % v
    return lines * ((along + pad) // v), pad


def to_vectors(w: torch.Tensor, v: int, layout: str) -> tuple[torch.Tensor, int]:
    """(N, v) vectors of a 2-D weight and the zero padding added per line."""
    m = w.detach().to(torch.float32)
    lines = m.T if layout == "column" else m  # each line is cut into vectors
    pad = (-lines.shape[1]) % v
    if pad:
        lines = torch.nn.functional.pad(lines, (0, pad))
    return lines.contiguous().reshape(-1, v), pad


def from_vectors(
    vecs: torch.Tensor, shape: tuple[int, ...], v: int, layout: str, pad: int
) -> torch.Tensor:
    """Inverse of :func:`to_vectors`."""
    out_f, in_f = _as_2d(shape)
    along, n_lines = (out_f, in_f) if layout == "column" else (in_f, out_f)
    lines = vecs.reshape(n_lines, along + pad)[:, :along]
    return (lines.T if layout == "column" else lines).contiguous()


def element_weights(
    h: torch.Tensor | None, shape: tuple[int, ...], v: int, layout: str, damp: float
) -> torch.Tensor:
    """(N, v) loss weight of every vector entry: the damped Hessian diagonal of its input
    column (1 everywhere without ``h``), 0 on padding so padding never pulls a centroid."""
    out_f, in_f = _as_2d(shape)
    if h is None:
        hd = torch.ones(in_f)
    else:
        hd = h.detach().to(torch.float32).reshape(-1)
        if hd.numel() != in_f:
            raise ValueError(f"Hessian diagonal has {hd.numel()} entries, weight has {in_f} inputs")
        hd = hd.clamp_min(0) + damp * float(hd.clamp_min(0).mean())
        if float(hd.max()) <= 0:  # all-zero activations: no information, weigh equally
            hd = torch.ones(in_f)
    grid = hd.unsqueeze(0).expand(out_f, in_f)  # weight of W[o, j] is h_j
    vecs, _ = to_vectors(grid, v, layout)
    return vecs  # zero-padded like the weights


# ---------------------------------------------------------------------------- k-means


def assign(
    x: torch.Tensor, w: torch.Tensor, c: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the centroid of least weighted distance sum_d w_d (x_d - c_d)^2 for each
    vector, and that distance. ``w`` is (N, v) per entry or (N,) per vector (then the
    nearest centroid is the Euclidean one, found with one GEMM). Ties go to the lower
    index."""
    n = x.shape[0]
    idx = torch.empty(n, dtype=torch.int64, device=x.device)
    dist = torch.empty(n, dtype=x.dtype, device=x.device)
    ct = c.T.contiguous()  # (v, k)
    per_vector = w.ndim == 1
    cn = (c * c).sum(dim=1) if per_vector else None
    c2 = None if per_vector else (c * c).T.contiguous()
    for i in range(0, n, chunk):
        xs, ws = x[i : i + chunk], w[i : i + chunk]
        if per_vector:
            m, a = torch.addmm(cn, xs, ct, alpha=-2.0).min(dim=1)
            m = ws * (m + (xs * xs).sum(dim=1))
        else:
            wx = ws * xs
            d = torch.addmm(ws @ c2, wx, ct, alpha=-2.0)
            m, a = d.min(dim=1)
            m = m + (wx * xs).sum(dim=1)
        idx[i : i + chunk] = a
        dist[i : i + chunk] = m.clamp_min_(0)
    return idx, dist


def _update(x: torch.Tensor, w: torch.Tensor, idx: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Each centroid moved to the weighted mean of its vectors (kept where it has none)."""
    k, v = c.shape
    wv = w if w.ndim == 2 else w.unsqueeze(1).expand(-1, v)
    wx = wv * x
    num = torch.stack([torch.bincount(idx, wx[:, d], minlength=k) for d in range(v)], dim=1)
    if w.ndim == 1:
        den = torch.bincount(idx, w, minlength=k).unsqueeze(1).expand(-1, v)
    else:
        den = torch.stack([torch.bincount(idx, w[:, d], minlength=k) for d in range(v)], dim=1)
    return torch.where(den > 0, num / den.clamp_min(1e-30), c).to(c.dtype)


def kmeans(
    x: torch.Tensor,
    w: torch.Tensor,
    k: int,
    *,
    iterations: int,
    tolerance: float,
    generator: torch.Generator,
    chunk: int = 16384,
    init: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Weighted Lloyd k-means: (centroids (k, v), assignment (N,), weighted loss).

    Initial centroids: ``init`` or k distinct vectors drawn at random (seeded)."""
    n = x.shape[0]
    if init is not None:
        c = init.to(x.device, torch.float32).clone()
    else:
        pick = torch.randperm(n, generator=generator)[:k].to(x.device)
        c = x[pick].clone()
    prev = math.inf
    idx, dist = assign(x, w, c, chunk)
    for _ in range(iterations):
        c = _update(x, w, idx, c)
        empty = torch.bincount(idx, minlength=k) == 0
        if bool(empty.any()):
            _reseed(x, w, c, dist, torch.nonzero(empty).flatten())
        idx, dist = assign(x, w, c, chunk)
        loss = float(dist.sum())
        if loss == 0.0 or (math.isfinite(prev) and prev - loss <= tolerance * prev):
            break
        prev = loss
    return c, idx, float(dist.sum())


def _reseed(
    x: torch.Tensor, w: torch.Tensor, c: torch.Tensor, dist: torch.Tensor, empty: torch.Tensor
) -> None:
    """Move each empty centroid onto the vector with the largest weighted error, one at a
    time (each move lowers the errors it then serves), in place."""
    dist = dist.clone()
    for e in empty.tolist():
        j = int(dist.argmax())
        if float(dist[j]) <= 0:
            break
        c[e] = x[j]
        err = (x - x[j]).square()
        err = w * err.sum(dim=1) if w.ndim == 1 else (w * err).sum(dim=1)
        dist = torch.minimum(dist, err)


# ----------------------------------------------------------------------- encode/decode


def index_bits(k: int) -> int:
    return max(1, math.ceil(math.log2(k)))


def effective_sizes(cfg: VPTQConfig, n_vectors: int) -> tuple[int, int]:
    """Codebook sizes used for a tensor of ``n_vectors``: a codebook is never larger than
    the vectors it serves."""
    k = min(cfg.codebook_size, n_vectors)
    kr = min(cfg.residual_codebook_size, n_vectors) if cfg.residual_codebook_size else 0
    return max(k, 1), kr


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """k-means on CPU runs on one torch thread: its operations are small (a 16k x 4 by
    4 x k product, a row-wise min), and splitting them across threads made cognate layers
    10-28x slower on the 2-core reference machine (thread hand-off costs more than the
    work; measured 5.8 s vs 0.2-0.6 s for 7 layers)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def quantise(w: torch.Tensor, cfg: VPTQConfig, h: torch.Tensor | None, seed: int) -> dict[str, Any]:
    """Codebooks and assignments of one 2-D weight (as stored: rounded codebooks)."""
    dev = select_device(cfg.device)
    with _one_cpu_thread(dev):
        return _quantise(w, cfg, h, seed, dev)


def _quantise(
    w: torch.Tensor, cfg: VPTQConfig, h: torch.Tensor | None, seed: int, dev: torch.device
) -> dict[str, Any]:
    v = cfg.vector_length
    x, pad = to_vectors(w, v, cfg.layout)
    h_used = h if cfg.hessian_weighted else None
    wts = element_weights(h_used, tuple(w.shape), v, cfg.layout, cfg.hessian_damp)
    x, wts = x.to(dev), wts.to(dev)
    if bool((wts == wts[:, :1]).all()):
        wts = wts[:, 0]  # one weight per vector (column layout, no padding): faster path
    k, kr = effective_sizes(cfg, x.shape[0])
    gen = torch.Generator().manual_seed(seed)
    n_fit = x.shape[0] if cfg.kmeans_sample == 0 else min(x.shape[0], max(cfg.kmeans_sample, k))
    fit = fit_w = None
    if n_fit < x.shape[0]:  # seeded subsample to fit on; every vector is assigned after
        fit, fit_w = weighted_sample(wts, n_fit, gen)
    cb_dtype = _TORCH_DTYPES[cfg.codebook_dtype]
    kw = {
        "iterations": cfg.kmeans_iterations,
        "tolerance": cfg.kmeans_tolerance,
        "generator": gen,
        "chunk": cfg.assign_chunk,
    }

    def fitted(data: torch.Tensor, kk: int) -> tuple[torch.Tensor, torch.Tensor]:
        sub, wsub = (data, wts) if fit is None else (data[fit], fit_w)
        cb, _, _ = kmeans(sub, wsub, kk, **kw)
        cb = cb.to(cb_dtype).to(torch.float32)  # as stored
        return cb, assign(data, wts, cb, cfg.assign_chunk)[0]

    c, idx = fitted(x, k)
    out: dict[str, Any] = {"pad": pad, "k": k, "kr": kr, "codebook": c, "indices": idx}
    if kr:
        cr, ridx = fitted(x - c[idx], kr)
        out.update(res_codebook=cr, res_indices=ridx)
    return out


def weighted_sample(
    w: torch.Tensor, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` vector indices drawn with replacement in proportion to each vector's loss
    weight, and their k-means weights (the entries' share of their vector's weight: all 1
    when a vector has one weight).

    Why not a uniform sample: the loss is dominated by a few input columns (smollm2's
    massive activations give one column of a down_proj over 1,000 times the mean Hessian
    diagonal), and a uniform 4% sample holds about 5 of that column's 144 vectors, so the
    codebook never fits them (that layer's Hessian-weighted error was 6x RTN's). Drawing in
    proportion to the weight and weighing the draws equally is an unbiased estimate of the
    same weighted loss."""
    per = (w if w.ndim == 1 else w.sum(dim=1)).to(torch.float64).cpu()
    total = float(per.sum())
    if total <= 0:  # no information: a uniform draw
        per, total = torch.ones_like(per), float(per.numel())
    cdf = torch.cumsum(per / total, dim=0)
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    idx = torch.searchsorted(cdf, u * float(cdf[-1])).clamp_max(per.numel() - 1).to(w.device)
    if w.ndim == 1:
        return idx, torch.ones(n, dtype=w.dtype, device=w.device)
    sw = w[idx]
    return idx, sw / sw.sum(dim=1, keepdim=True).clamp_min(1e-30)


def _tensor_seed(seed: int, name: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (1 << 63)


def encode(name: str, w: torch.Tensor, cfg_map: Mapping[str, Any]) -> TensorRecord:
    """Fit the codebook(s) of ``w`` and pack indices and codebooks into a record.

    ``cfg_map`` is the method config; with ``hessian_weighted`` (the default) it must be a
    :class:`Calibrated` mapping (see :func:`calibrated`) holding this tensor's diagonal."""
    cfg = cfg_map if isinstance(cfg_map, VPTQConfig) else VPTQConfig.from_mapping(cfg_map)
    h = None
    if cfg.hessian_weighted:
        stats = getattr(cfg_map, "hessian_diag", None)
        if stats is None or name not in stats:
            raise ForgebenchError(
                f"vptq: no Hessian diagonal for {name}: calibrate first "
                "(forgebench.compression.vptq.calibrated) or set hessian_weighted: false"
            )
        h = stats[name]
    q = quantise(w, cfg, h, _tensor_seed(cfg.seed, name))
    np_dtype = CODEBOOK_DTYPES[cfg.codebook_dtype]
    segments = {
        "indices": pack_bits(q["indices"].cpu().numpy(), index_bits(q["k"])),
        "codebook": q["codebook"].cpu().numpy().astype(np_dtype).tobytes(),
    }
    if q["kr"]:
        segments["res_indices"] = pack_bits(q["res_indices"].cpu().numpy(), index_bits(q["kr"]))
        segments["res_codebook"] = q["res_codebook"].cpu().numpy().astype(np_dtype).tobytes()
    n_vec = int(q["indices"].numel())
    return TensorRecord(
        name=name,
        shape=tuple(w.shape),
        dtype=str(w.dtype).removeprefix("torch."),
        encoding="vptq",
        segments=segments,
        meta={
            "vector_length": cfg.vector_length,
            "codebook_size": q["k"],
            "residual_codebook_size": q["kr"],
            "layout": cfg.layout,
            "pad": q["pad"],
            "vectors": n_vec,
            "codebook_dtype": cfg.codebook_dtype,
            "hessian_weighted": cfg.hessian_weighted,
        },
    )


def _meta(rec: TensorRecord) -> tuple[int, int, int, str, int, int, str]:
    try:
        m = rec.meta
        out = (
            int(m["vector_length"]),
            int(m["codebook_size"]),
            int(m["residual_codebook_size"]),
            str(m["layout"]),
            int(m["pad"]),
            int(m["vectors"]),
            str(m["codebook_dtype"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"tensor {rec.name}: vptq metadata incomplete: {exc!r}") from None
    v, k, kr, layout, pad, n, dt = out
    if layout not in LAYOUTS or dt not in CODEBOOK_DTYPES or v < 1 or k < 1 or kr < 0:
        raise ArtifactError(f"tensor {rec.name}: vptq metadata invalid: {rec.meta}")
    if vector_count(rec.shape, v, layout) != (n, pad):
        raise ArtifactError(
            f"tensor {rec.name}: vptq metadata says {n} vectors, pad {pad}; shape "
            f"{list(rec.shape)} with v={v} ({layout}) needs {vector_count(rec.shape, v, layout)}"
        )
    return out


def _codebook(rec: TensorRecord, seg: str, k: int, v: int, dt: str) -> np.ndarray:
    data = rec.segments.get(seg)
    np_dtype = CODEBOOK_DTYPES[dt]
    need = k * v * np.dtype(np_dtype).itemsize
    if data is None or len(data) != need:
        got = "missing" if data is None else f"{len(data)} bytes"
        raise ArtifactError(
            f"tensor {rec.name}: vptq segment {seg!r} is {got}, {k} x {v} {dt} need {need}"
        )
    return np.frombuffer(data, dtype=np_dtype).astype(np.float32).reshape(k, v)


def _indices(rec: TensorRecord, seg: str, k: int, n: int) -> np.ndarray:
    data = rec.segments.get(seg)
    if data is None:
        raise ArtifactError(f"tensor {rec.name}: vptq segment {seg!r} missing")
    idx = unpack_bits(data, index_bits(k), n).astype(np.int64)
    if idx.size and int(idx.max()) >= k:
        raise ArtifactError(
            f"tensor {rec.name}: vptq index {int(idx.max())} outside a codebook of {k}"
        )
    return idx


def decode(rec: TensorRecord) -> torch.Tensor:
    """The float32 weight: codebook[indices] (+ residual codebook[residual indices])."""
    if rec.encoding != "vptq":
        raise ArtifactError(f"tensor {rec.name}: not a vptq record ({rec.encoding!r})")
    v, k, kr, layout, pad, n, dt = _meta(rec)
    vecs = _codebook(rec, "codebook", k, v, dt)[_indices(rec, "indices", k, n)]
    if kr:
        vecs = vecs + _codebook(rec, "res_codebook", kr, v, dt)[_indices(rec, "res_indices", kr, n)]
    return from_vectors(torch.from_numpy(vecs), rec.shape, v, layout, pad)


def theoretical_bits(cfg_map: Mapping[str, Any], shape: tuple[int, ...]) -> float:
    """Bits of one tensor: indices at ceil(log2 k) bits per vector plus the codebooks
    (k x v entries of ``codebook_dtype``), residual codebook likewise."""
    cfg = VPTQConfig.from_mapping(cfg_map)
    n, _ = vector_count(shape, cfg.vector_length, cfg.layout)
    k, kr = effective_sizes(cfg, n)
    bits = n * index_bits(k) + k * cfg.vector_length * cfg.codebook_bits
    if kr:
        bits += n * index_bits(kr) + kr * cfg.vector_length * cfg.codebook_bits
    return float(bits)


def method_params(cfg_map: Mapping[str, Any]) -> dict[str, Any]:
    """What the numbers mean, for the rows' params."""
    cfg = VPTQConfig.from_mapping(cfg_map)
    out = cfg.as_params()
    out["paper_parts_not_implemented"] = [
        "GPTQ-style error feedback with the full inverse Hessian",
        "outlier codebooks",
        "per-channel normalisation",
        "layer-wise fine-tuning",
    ]
    tokens = getattr(cfg_map, "calibration_tokens_used", None)
    if tokens is not None:
        out["calibration_tokens_used"] = tokens
    return out
