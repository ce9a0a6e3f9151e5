"""The compression section: a table per compression benchmark, a row per method.

Why: ratios and bits per weight only mean something next to what they cost (relative
error, perplexity) and how they were measured (from the artifact's bytes; tokens/s of
the decompressed dense model), so each table puts them side by side with those notes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from forgebench.report.cells import Cells
from forgebench.report.format import styled

# Compression tables: (metric, column label, style), shown where a benchmark has the metric.
# Styles: "x" a ratio, "num" a plain number, "unit" the metric's own unit.
COMPRESSION_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("bits_per_weight", "bits/weight (measured, quantised layers)", "num"),
    ("bits_per_weight_theoretical", "bits/weight (configured)", "num"),
    ("bits_per_weight_whole", "bits/weight (whole file)", "num"),
    ("ratio_vs_fp32_quantised", "ratio vs fp32 (quantised layers)", "x"),
    ("ratio_vs_fp32_whole", "ratio vs fp32 (whole file)", "x"),
    ("ratio", "ratio", "x"),
    ("relative_error", "relative error", "num"),
    ("perplexity_original", "perplexity (original)", "num"),
    ("perplexity", "perplexity", "num"),
    ("perplexity_delta", "perplexity delta", "num"),
    ("tokens_per_s_original", "tokens/s (original)", "unit"),
    ("tokens_per_s", "tokens/s (decompressed, dense)", "unit"),
    ("compress_time", "compress time", "unit"),
    ("decompress_time", "decompress time", "unit"),
    ("compress_throughput", "compress", "unit"),
    ("decompress_throughput", "decompress", "unit"),
)
COMPRESSION_BENCHMARKS = ("weights", "pipeline", "selector", "lossless_codecs")


def _compression_notes(params: Mapping[str, Any]) -> list[str]:
    notes = []
    if params.get("inference") == "dense":
        notes.append("tokens/s of the decompressed dense float32 model: no packed-weight kernel")
    if params.get("post_training"):
        notes.append(
            "post-training ternarisation of trained weights, no quantisation-aware training"
        )
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
            rows.append({"method": case, "cells": values, "notes": _compression_notes(params)})
        tables.append({"benchmark": bench, "columns": [c[1] for c in columns], "rows": rows})
    return {"tables": tables} if tables else None
