"""The compression section: a table per compression benchmark, a row per method, and the
quality findings of the weights benchmark with their figure.

Why: ratios and bits per weight only mean something next to what they cost (relative
error, perplexity with its paired interval) and how they were measured (from the
artifact's bytes; tokens/s of the decompressed dense model), so each table puts them side
by side with those notes. The findings say, from the recorded intervals, which variants
changed perplexity and whether the damage follows bits per weight; each names its
configuration beside its figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from forgebench import plots
from forgebench.report.cells import Cells
from forgebench.report.format import styled

# Compression tables: (metric, column label, style), shown where a benchmark has the metric.
# Styles: "x" a ratio, "num" a plain number, "unit" the metric's own unit.
COMPRESSION_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("bits_per_weight", "bits/weight (measured, quantised layers)", "num"),
    ("bits_per_weight_theoretical", "bits/weight (configured)", "num"),
    ("bits_per_weight_whole", "bits/weight (whole file)", "num"),
    ("ratio_vs_fp16_quantised", "ratio vs fp16 (quantised layers; the papers' basis)", "x"),
    ("ratio_vs_fp32_quantised", "ratio vs fp32 (quantised layers)", "x"),
    ("ratio_vs_fp16_whole", "ratio vs fp16 (whole file)", "x"),
    ("ratio_vs_fp32_whole", "ratio vs fp32 (whole file)", "x"),
    ("ratio_vs_gguf_file", "ratio vs the GGUF file (whole file)", "x"),
    ("ratio", "ratio", "x"),
    ("relative_error", "relative error", "num"),
    ("perplexity_original", "perplexity (original)", "num"),
    ("perplexity", "perplexity", "num"),
    ("perplexity_delta", "perplexity delta", "num"),
    ("perplexity_change", "perplexity change (ratio - 1, paired over documents)", "num"),
    ("tokens_per_s_original", "tokens/s (original)", "unit"),
    ("tokens_per_s", "tokens/s (decompressed, dense)", "unit"),
    ("compress_time", "compress time", "unit"),
    ("decompress_time", "decompress time", "unit"),
    ("compress_throughput", "compress", "unit"),
    ("decompress_throughput", "decompress", "unit"),
)
COMPRESSION_BENCHMARKS = ("weights", "pipeline", "selector", "lossless_codecs")


#: Keys of a method's params that name its configuration, in the order shown.
_CONFIG_KEYS = (
    ("block_size", "C"), ("latent_dim", "P"), ("lfsr_bits", "K"), ("coeff_bits", "coeff bits"),
    ("search", "search"), ("packing", "packing"), ("vector_length", "v"),
    ("codebook_size", "k"), ("residual_codebook_size", "residual k"),
)  # fmt: skip


def config_label(case: str, params: Mapping[str, Any]) -> str:
    """The case with the settings that define it, e.g. ``seedlm (C=8, P=3, K=8)``."""
    parts = [f"{label}={params[k]}" for k, label in _CONFIG_KEYS if k in params]
    return f"{case} ({', '.join(parts)})" if parts else case


def _compression_notes(params: Mapping[str, Any]) -> list[str]:
    notes = []
    if params.get("inference") == "dense":
        notes.append("tokens/s of the decompressed dense float32 model: no packed-weight kernel")
    if params.get("post_training"):
        notes.append(
            "post-training ternarisation of trained weights, no quantisation-aware training: "
            "a collapse is the expected finding (BitNet b1.58's models are trained ternary)"
        )
    if params.get("weights_origin"):
        counts = params.get("gguf_tensor_type_counts") or {}
        types = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
        notes.append(
            f"source {params.get('gguf_file', 'GGUF')}: {params['weights_origin']}"
            + (f" (tensors: {types})" if types else "")
        )
    if params.get("perplexity_verdict"):
        notes.append(f"perplexity: {params['perplexity_verdict']} ({params['perplexity_reason']})")
    return notes


def compression_section(cells: Cells) -> dict[str, Any] | None:
    """A table per compression benchmark: a row per method, the columns it measured."""
    tables = []
    for bench in [b for b in COMPRESSION_BENCHMARKS if b in cells.benchmarks("compression")]:
        metrics = cells.metrics("compression", bench)
        columns = [c for c in COMPRESSION_COLUMNS if c[0] in metrics]
        rows = []
        for case in cells.cases("compression", bench):
            values = []
            for metric, _, style in columns:
                key = ("compression", bench, case, metric)
                unit = cells.unit(key)
                values.append(
                    cells.text(key, lambda x, u=unit, s=style: styled(x, u, s))
                    if cells.has(key)
                    else "—"
                )
            params = next(
                (
                    cells.params(k)
                    for k in sorted(cells.rows)
                    if k[:3] == ("compression", bench, case)
                ),
                {},
            )
            quality = cells.params(("compression", bench, case, "perplexity_change"))
            rows.append(
                {
                    "method": config_label(case, params),
                    "cells": values,
                    "notes": _compression_notes({**params, **quality}),
                }
            )
        tables.append({"benchmark": bench, "columns": [c[1] for c in columns], "rows": rows})
    if not tables:
        return None
    variants = quality_variants(cells)
    return {"tables": tables, "variants": variants, "findings": quality_findings(variants)}


def quality_variants(cells: Cells) -> list[dict[str, Any]]:
    """Each compressed variant of the weights benchmark with a perplexity change: bits
    per weight, change and interval, verdict and configuration, by bits per weight."""
    out = []
    for case in cells.cases("compression", "weights"):
        key = ("compression", "weights", case, "perplexity_change")
        bits = cells.value(("compression", "weights", case, "bits_per_weight"))
        change = cells.value(key)
        if not (math.isfinite(bits) and math.isfinite(change)):
            continue
        low, high, _ = cells.interval(key)
        params = cells.params(key)
        out.append(
            {
                "case": case,
                "label": config_label(case, params),
                "bits": bits,
                "change": change,
                "low": low,
                "high": high,
                "verdict": str(params.get("perplexity_verdict", "")),
                "post_training": bool(params.get("post_training")),
                "equivalence": float(params.get("perplexity_equivalence", math.nan)),
            }
        )
    return sorted(out, key=lambda v: (-v["bits"], v["case"]))


def _pct(x: float) -> str:
    return f"{100 * x:+.2f}%" if abs(x) < 10 else f"×{1 + x:.3g}"


def quality_findings(variants: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sentences read off the intervals: each variant's change, whether the order of the
    changes follows bits per weight, and BitNet's post-training collapse."""
    out = []
    for v in variants:
        interval = f"[{_pct(v['low'])}, {_pct(v['high'])}]" if math.isfinite(v["low"]) else ""
        out.append(
            f"{v['label']}, {v['bits']:.3g} bits/weight: perplexity {_pct(v['change'])} "
            f"{interval}, {v['verdict'] or 'no verdict'}"
        )
    # Fewer bits should never cost less: a pair breaks the order only when the variant
    # with fewer bits changes perplexity less, both intervals apart.
    breaks, unsettled = [], []
    by_bits = sorted(variants, key=lambda v: -v["bits"])
    for i, hi in enumerate(by_bits):
        for lo in by_bits[i + 1 :]:
            if lo["bits"] >= hi["bits"]:
                continue
            if lo["high"] < hi["low"]:
                breaks.append(f"{lo['case']} ({lo['bits']:.3g} bits) < {hi['case']}")
            elif not (lo["low"] > hi["high"]):
                unsettled.append(f"{lo['case']}/{hi['case']}")
    if len(variants) >= 2:
        if breaks:
            out.append("the order does not follow bits per weight: " + "; ".join(breaks))
        else:
            tail = f" (intervals overlap for {', '.join(unsettled)})" if unsettled else ""
            out.append(
                "the order follows bits per weight: no variant with fewer bits changes "
                f"perplexity less{tail}"
            )
    for v in variants:
        if v["post_training"] and v["verdict"] == "regression":
            out.append(
                f"{v['case']}: post-training ternarisation collapses the model (perplexity "
                f"{_pct(v['change'])}), the expected finding: BitNet b1.58's models are "
                "trained ternary from the start, not ternarised after training"
            )
    return out


def plan_figures(
    section: Mapping[str, Any] | None, plots_dir: str | Path, jobs: list[plots.FigureJob]
) -> list[plots.Figure]:
    """Perplexity change with its paired interval against bits per weight, a point per
    compressed variant labelled with its configuration; none without a variant."""
    variants = list((section or {}).get("variants") or [])
    writer = plots._Writer(plots_dir, jobs)
    title = "compression/weights: held-out perplexity change against bits per weight"
    writer.add(
        "compression", "compression", ["weights", "perplexity_change"], title, _draw_quality,
        variants=variants, title=title, n_points=len(variants),
    )  # fmt: skip
    return writer.done()


def _draw_quality(variants: Sequence[Mapping[str, Any]], title: str) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=100)
    band = next((v["equivalence"] for v in variants if math.isfinite(v["equivalence"])), None)
    if band:
        ax.axhspan(-band, band, color="0.85", label=f"no change (±{band:.0%})")
    for v in variants:
        low = v["low"] if math.isfinite(v["low"]) else v["change"]
        high = v["high"] if math.isfinite(v["high"]) else v["change"]
        err = [[max(v["change"] - low, 0.0)], [max(high - v["change"], 0.0)]]
        ax.errorbar(v["bits"], v["change"], yerr=err, fmt="o", capsize=3)
        ax.annotate(v["label"], (v["bits"], v["change"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")  # fmt: skip
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xlabel("bits per weight (quantised layers, measured)")
    ax.set_ylabel("perplexity change vs original (paired interval)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if band:
        ax.legend(fontsize=7)
    return fig
