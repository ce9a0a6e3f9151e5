"""compression/selector: the "unified" selector, which picks per model the method that
meets a target ratio with the least quality loss, from the compression jobs' outputs.

It compresses nothing: each candidate is a compression method key whose job already
wrote its artifact (results/compression/<model>/<key>.fbc) and its per-document held-out
perplexity (<key>.perplexity.parquet), beside the original's (original.perplexity.parquet).
The ratio comes from the artifact's bytes (read back and digest-checked): ``ratio_basis``
``quantised`` = reference bytes of the quantised layers / their payload bytes, ``whole`` =
the whole state dict / the whole file, the reference being ``ratio_reference`` (fp16, the
papers' basis, or fp32). The quality loss is the perplexity change paired per document
with the original (forgebench.compression.perplexity; cards must match).

The decision reads intervals, not point estimates: among the candidates meeting the
target, the best is the one whose interval of perplexity change has the lowest upper
bound; every candidate whose interval reaches below that bound cannot be told from it,
and among those the pick is the one with the larger ratio (equal quality as far as the
data shows, more compression). ``pick_separated`` says whether the pick's interval lies
wholly below every other meeting candidate's (1) or not (0). No candidate meeting the
target: no pick, and the rows say so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from forgebench.compression.artifact import read_artifact
from forgebench.errors import ForgebenchError
from forgebench.record import Recorder, status_for

BENCHMARK_VERSION = 2
SUITE = "compression"
NAME = "selector"
KEY = "suites.compression.benchmarks.selector"
BASES = ("quantised", "whole")
REFERENCE_BYTES = {"fp16": 2.0, "fp32": 4.0}
SELECTION_CASE = "selection"

log = logging.getLogger(__name__)


def choose(measured: Mapping[str, Mapping[str, float]], target: float) -> tuple[str | None, bool]:
    """(pick, separated) from name -> {ratio, low, high} (the change's interval); see the
    module doc. Failed candidates (NaN) never meet the target."""
    ok = {
        n: m
        for n, m in measured.items()
        if all(math.isfinite(m[k]) for k in ("ratio", "low", "high")) and m["ratio"] >= target
    }
    if not ok:
        return None, False
    bound = min(m["high"] for m in ok.values())
    tied = [n for n, m in ok.items() if m["low"] <= bound]
    pick = max(tied, key=lambda n: (ok[n]["ratio"], n))
    separated = all(ok[pick]["high"] < m["low"] for n, m in ok.items() if n != pick)
    return pick, separated


def artifact_ratio(path: Path, basis: str, reference: str) -> tuple[float, int]:
    """(ratio, artifact bytes) of a compression job's artifact, read back from disk."""
    art, sizes = read_artifact(path)
    per = REFERENCE_BYTES[reference]
    counts = [(math.prod(r.shape), r.kept) for r in art.tensors]
    n_q = sum(n for n, kept in counts if not kept)
    n_all = sum(n for n, _ in counts)
    if basis == "quantised":
        return (per * n_q / sizes.quantised_payload if sizes.quantised_payload else math.nan), (
            sizes.total
        )
    return per * n_all / sizes.total, sizes.total


def _settings(cfg: Mapping[str, Any]) -> tuple[list[str], float, str, str, Path]:
    cands = [str(c) for c in cfg.get("candidates", [])]
    if not cands or len(set(cands)) != len(cands):
        raise ForgebenchError(
            f"{KEY}.candidates: a list of distinct compression method keys is needed, got {cands}"
        )
    basis = str(cfg.get("ratio_basis", "quantised"))
    if basis not in BASES:
        raise ForgebenchError(f"{KEY}.ratio_basis: {basis!r} not one of {BASES}")
    reference = str(cfg.get("ratio_reference", "fp16"))
    if reference not in REFERENCE_BYTES:
        raise ForgebenchError(f"{KEY}.ratio_reference: {reference!r} not one of fp16, fp32")
    folder = Path(str(cfg.get("compression_dir") or ""))
    if not (folder / ORIGINAL_FILE).is_file():
        raise ForgebenchError(
            f"{KEY}: {folder / ORIGINAL_FILE} is missing; the selector reads the compression "
            "jobs' outputs (suites.compression.models must include the selector's model)"
        )
    return cands, float(cfg.get("target_ratio", 4.0)), basis, reference, folder


ORIGINAL_FILE = "original.perplexity.parquet"


def inputs(folder: str, candidates: Sequence[str]) -> list[str]:
    """The files a selector reads: the original's perplexity, each candidate's artifact
    and perplexity."""
    out = [f"{folder}/{ORIGINAL_FILE}"]
    for c in candidates:
        out += [f"{folder}/{c}.fbc", f"{folder}/{c}.perplexity.parquet"]
    return out


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Read every candidate's artifact and perplexity, pick on intervals (module doc).

    cfg keys: ``candidates`` (method keys), ``target_ratio`` (4.0), ``ratio_basis``
    (quantised), ``ratio_reference`` (fp16), ``confidence`` (0.95),
    ``perplexity_equivalence`` (0.01); injected ``compression_dir``."""
    del seed  # nothing random: every figure is read from the compression jobs' files
    # Imported here: the workflow's parse reads ``inputs`` and must not import torch.
    from forgebench.compression import perplexity

    cands, target, basis, reference, folder = _settings(cfg)
    confidence = float(cfg.get("confidence", 0.95))
    equivalence = float(cfg.get("perplexity_equivalence", 0.01))
    original, card = perplexity.read_result(folder / ORIGINAL_FILE)
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    base = {
        "target_ratio": target,
        "ratio_basis": basis,
        "ratio_reference": reference,
        "perplexity_card": card.as_dict(),
        "decision": "lowest upper bound of the perplexity change; ties within intervals "
        "go to the larger ratio",
    }
    measured: dict[str, dict[str, float]] = {}
    for name in cands:
        params = {**base, "candidate": name}
        try:
            ratio, total = artifact_ratio(folder / f"{name}.fbc", basis, reference)
            frame, their = perplexity.read_result(folder / f"{name}.perplexity.parquet")
            perplexity.require_same_card(card, their, f"{KEY}.candidates: {name}")
            cmp = perplexity.paired_change(
                original, frame, confidence=confidence, threshold=equivalence
            )
        except ForgebenchError:
            raise
        except Exception as exc:
            log.warning("selector candidate %s failed: %r", name, exc)
            for metric in ("ratio", "perplexity_change"):
                rec.add(name, params, metric, "ratio", metric == "ratio", math.nan,
                        status=status_for(exc))  # fmt: skip
            continue
        low, high = (b - 1.0 for b in cmp.ratio_ci)
        measured[name] = {"ratio": ratio, "change": cmp.ratio - 1.0, "low": low, "high": high}
        params = {**params, "perplexity_verdict": cmp.verdict, "perplexity_reason": cmp.reason}
        rec.add(name, params, "ratio", "ratio", True, ratio)
        rec.add(name, params, "artifact_bytes", "bytes", False, float(total))
        for suffix, value in (("", cmp.ratio - 1.0), ("_ci_low", low), ("_ci_high", high)):
            rec.add(name, params, f"perplexity_change{suffix}", "ratio", False, value,
                    status="ok" if math.isfinite(value) else "skipped")  # fmt: skip
        rec.add(name, params, "meets_target", "bool", True, float(ratio >= target))
        log.info("selector %s: ratio %.2f (%s vs %s), perplexity change %+.2f%% [%+.2f%%, %+.2f%%]",
                 name, ratio, basis, reference, 100 * (cmp.ratio - 1), 100 * low,
                 100 * high)  # fmt: skip
    pick, separated = choose(measured, target)
    sel = {**base, "pick": pick, "candidates": cands}
    for name in measured:
        rec.add(name, {**base, "candidate": name}, "picked", "bool", True, float(name == pick))
    if pick is None:
        log.info("selector: no candidate meets %.2fx (%s vs %s)", target, basis, reference)
        rec.add(SELECTION_CASE, sel, "pick_met_target", "bool", True, 0.0)
        return rec.frame()
    again, _ = artifact_ratio(folder / f"{pick}.fbc", basis, reference)
    confirmed = again == measured[pick]["ratio"]
    rec.add(SELECTION_CASE, sel, "pick_met_target", "bool", True, 1.0)
    rec.add(SELECTION_CASE, sel, "pick_ratio", "ratio", True, measured[pick]["ratio"])
    rec.add(SELECTION_CASE, sel, "pick_perplexity_change", "ratio", False, measured[pick]["change"])
    rec.add(SELECTION_CASE, sel, "pick_separated", "bool", True, float(separated))
    rec.add(SELECTION_CASE, sel, "pick_confirmed", "bool", True, 1.0 if confirmed else math.nan,
            status="ok" if confirmed else "mismatch")  # fmt: skip
    log.info("selector: picked %s (separated from the rest: %s)", pick, separated)
    return rec.frame()


__all__ = ["choose", "inputs", "run"]
