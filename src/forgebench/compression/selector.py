"""compression/selector: the "unified" selector, which picks per model the method that
meets a target ratio with the least quality loss, from measurements only.

Every candidate (a method config, or a pipeline given as ``stages``) is compressed to an
artifact on disk; its ratio is computed from those bytes (``ratio_basis``: ``quantised``
= fp32 bytes of the quantised layers / their payload bytes, ``whole`` = whole fp32 state
dict / whole file) and its quality loss is the perplexity delta of the decompressed
(dense) model on the model's held-out text. The pick is the candidate whose measured
ratio meets ``target_ratio`` with the smallest perplexity delta (ties: larger ratio);
when none meets it, there is no pick and the rows say so. The pick is then confirmed by
reading its artifact back from disk once more: the file must decode to the weights that
were scored and give the same ratio (``pick_confirmed`` 1, else 0 with status
``mismatch``).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from forgebench.compression import codecs, metrics, pipeline
from forgebench.compression.artifact import decode as decode_bytes
from forgebench.compression.calibration import enough_texts, model_texts
from forgebench.errors import ForgebenchError
from forgebench.record import Recorder, status_for, utcnow

BENCHMARK_VERSION = 1
SUITE = "compression"
NAME = "selector"
KEY = "suites.compression.benchmarks.selector"
BASES = ("quantised", "whole")
SELECTION_CASE = "selection"

log = logging.getLogger(__name__)


def _ratio(basis: str, n_q: int, n_all: int, q_payload: int, total: int) -> float:
    if basis == "quantised":
        return 4.0 * n_q / q_payload if q_payload else math.nan
    return 4.0 * n_all / total


def choose(measured: Mapping[str, Mapping[str, float]], target: float) -> str | None:
    """Name of the candidate meeting ``target`` with the least perplexity delta (ties: the
    larger ratio, then the name); None when none meets it. ``measured``: name ->
    {ratio, perplexity_delta}, failed candidates left out."""
    ok = [
        (m["perplexity_delta"], -m["ratio"], name)
        for name, m in measured.items()
        if math.isfinite(m["ratio"])
        and math.isfinite(m["perplexity_delta"])
        and m["ratio"] >= target
    ]
    return min(ok)[2] if ok else None


def _candidates(cfg: Mapping[str, Any], basis: str) -> list[dict[str, Any]]:
    cands = [dict(c) for c in cfg.get("candidates", [])]
    if not cands:
        raise ForgebenchError(f"{KEY}.candidates: at least one candidate is needed")
    names = [str(c.get("name", "")) for c in cands]
    if "" in names or len(set(names)) != len(names):
        raise ForgebenchError(f"{KEY}.candidates: every candidate needs a unique name, got {names}")
    for c in cands:
        stages = c.get("stages") or [c]
        for i, s in enumerate(stages):
            pipeline.encoder_for(
                str(s.get("method", "")), f"{KEY}.candidates.{c['name']}.stages[{i}]"
            )
        if c.get("codec"):
            if basis == "quantised":
                raise ForgebenchError(
                    f"{KEY}.candidates.{c['name']}.codec: a codec wraps the whole file, so "
                    "the quantised layers' bytes are not separable; use ratio_basis: whole"
                )
            cd = c["codec"]
            codecs.get_codec(
                str(cd.get("codec")), int(cd.get("level", 0)), f"{KEY}.candidates.{c['name']}.codec"
            )
    return cands


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Measure every candidate, pick, confirm (module doc).

    cfg keys: ``candidates`` (list: {name, method, ...} or {name, stages: [...], codec}),
    ``target_ratio`` (4.0), ``ratio_basis`` (quantised), ``perplexity_tokens``,
    ``perplexity_context``; injected ``model_dir``, ``datasets_dir``.
    """
    torch.manual_seed(seed)
    model_dir = Path(str(cfg.get("model_dir") or ""))
    if not (model_dir / "config.json").is_file():
        raise ForgebenchError(f"{KEY}.model_dir: {str(model_dir)!r} is not an HF model folder")
    target = float(cfg.get("target_ratio", 4.0))
    basis = str(cfg.get("ratio_basis", "quantised"))
    if basis not in BASES:
        raise ForgebenchError(f"{KEY}.ratio_basis: {basis!r} not one of {BASES}")
    cands = _candidates(cfg, basis)
    calib, heldout, text_info = model_texts(model_dir, cfg.get("datasets_dir"), seed, key=KEY)
    tokens = int(cfg.get("perplexity_tokens", 2048))
    ctx = int(cfg.get("perplexity_context", 256))
    state = pipeline.load_state(model_dir)
    n_all = sum(t.numel() for t in state.values())
    quantised = [n for n, t in state.items() if metrics.is_quantised(n, t)]
    n_q = sum(state[n].numel() for n in quantised)
    model, tok = pipeline.load_lm(model_dir)
    ids = _heldout_ids(tok, heldout, tokens)
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    base_params = {"target_ratio": target, "ratio_basis": basis, "inference": "dense", **text_info}
    try:
        p0 = pipeline.perplexity_of(model, state, ids, ctx)
    except Exception as exc:  # no baseline quality: nothing can be selected
        log.warning("selector: original model's perplexity failed: %r", exc)
        status = status_for(exc)
        rec.add(
            SELECTION_CASE,
            base_params,
            "perplexity_original",
            "perplexity",
            False,
            math.nan,
            status=status,
        )
        rec.add(
            SELECTION_CASE, base_params, "pick_met_target", "bool", True, math.nan, status=status
        )
        return rec.frame()
    rec.add(SELECTION_CASE, base_params, "perplexity_original", "perplexity", False, p0)
    measured: dict[str, dict[str, float]] = {}
    files: dict[str, tuple[Path, str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="fb-selector-") as tmp:
        for c in cands:
            name = str(c["name"])
            params = {**base_params, "candidate": {k: v for k, v in c.items() if k != "name"}}
            started = utcnow()

            def add(metric: str, unit: str, hib: bool, value: float, **kw: Any) -> None:
                rec.add(name, params, metric, unit, hib, value, started_at=started, **kw)  # noqa: B023

            try:
                path = Path(tmp) / f"{name}.fbc"
                t0 = time.perf_counter()
                stages = pipeline.calibrate_stages(c.get("stages") or [c], model_dir, calib)
                _, facts, total = pipeline.run_chain(state, stages, c.get("codec"), path)
                t_comp = time.perf_counter() - t0
                restored = pipeline.read_final(path)
                q_payload = _quantised_payload(facts, c)
                ratio = _ratio(basis, n_q, n_all, q_payload, total)
                p1 = pipeline.perplexity_of(model, restored, ids, ctx)
                _, err = metrics.relative_errors(state, restored, quantised)
            except ForgebenchError:
                raise
            except Exception as exc:
                log.warning("selector candidate %s failed: %r", name, exc)
                for metric, unit, hib in (
                    ("ratio", "ratio", True),
                    ("perplexity_delta", "perplexity", False),
                ):
                    add(metric, unit, hib, math.nan, status=status_for(exc))
                continue
            measured[name] = {"ratio": ratio, "perplexity_delta": p1 - p0}
            files[name] = (path, pipeline.state_digest(restored), ratio)
            add("ratio", "ratio", True, ratio)
            add("ratio_vs_fp32_whole", "ratio", True, 4.0 * n_all / total)
            add("artifact_bytes", "bytes", False, float(total))
            add("perplexity", "perplexity", False, p1)
            add("perplexity_delta", "perplexity", False, p1 - p0)
            add("relative_error", "ratio", False, err)
            add("meets_target", "bool", True, float(ratio >= target))
            add("compress_time", "s", False, t_comp)
            log.info(
                "selector %s: ratio %.2f (%s), perplexity delta %.4f", name, ratio, basis, p1 - p0
            )
        pick = choose(measured, target)
        sel = {**base_params, "pick": pick, "candidates": [c["name"] for c in cands]}
        for c in cands:
            if c["name"] in measured:
                params = {**base_params, "candidate": {k: v for k, v in c.items() if k != "name"}}
                rec.add(c["name"], params, "picked", "bool", True, float(c["name"] == pick))
        if pick is None:
            log.info("selector: no candidate meets %.2fx (%s)", target, basis)
            rec.add(SELECTION_CASE, sel, "pick_met_target", "bool", True, 0.0)
            return rec.frame()
        path, digest, ratio = files[pick]
        confirmed = _confirm(path, digest, ratio, basis, n_q, n_all)
    rec.add(
        SELECTION_CASE,
        sel,
        "pick_met_target",
        "bool",
        True,
        float(measured[pick]["ratio"] >= target),
    )
    rec.add(SELECTION_CASE, sel, "pick_ratio", "ratio", True, measured[pick]["ratio"])
    rec.add(
        SELECTION_CASE,
        sel,
        "pick_perplexity_delta",
        "perplexity",
        False,
        measured[pick]["perplexity_delta"],
    )
    rec.add(
        SELECTION_CASE,
        sel,
        "pick_confirmed",
        "bool",
        True,
        1.0 if confirmed else math.nan,
        status="ok" if confirmed else "mismatch",
    )
    log.info("selector: picked %s (confirmed: %s)", pick, confirmed)
    return rec.frame()


def _heldout_ids(tok: Any, texts: list[str], tokens: int) -> torch.Tensor:
    from forgebench.compression.compress_model import heldout_ids

    return heldout_ids(tok, enough_texts(texts, tokens), tokens)


def _quantised_payload(facts: list[dict[str, Any]], cand: Mapping[str, Any]) -> int:
    """Quantised-layer payload bytes of the stored (last) stage (no codec: checked)."""
    return int(facts[-1]["quantised_payload"])


def _confirm(path: Path, digest: str, ratio: float, basis: str, n_q: int, n_all: int) -> bool:
    """Read the pick's file again: same weights (digest) and the same ratio."""
    try:
        restored = pipeline.read_final(path)
        blob = path.read_bytes()
        if blob.startswith(codecs.FRAME_MAGIC):
            blob, _, _ = codecs.unwrap(blob, str(path))
        _, sizes = decode_bytes(blob, str(path))
    except Exception as exc:
        log.warning("selector: pick's artifact could not be read back: %r", exc)
        return False
    q_payload = sizes.quantised_payload
    again = _ratio(basis, n_q, n_all, q_payload, path.stat().st_size)
    return pipeline.state_digest(restored) == digest and again == ratio


__all__ = ["choose", "run"]
