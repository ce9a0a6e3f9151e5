"""How the report writes numbers: units scaled for reading, changes as signed percentages,
intervals as ``[low, high]``, and JSON without NaN.

One place, so the HTML, the Markdown and the terminal show a figure the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

_UNIT_SCALES = {"s": ((1e-6, "ns", 1e9), (1e-3, "µs", 1e6), (1.0, "ms", 1e3))}


def finite(value: Any) -> bool:
    """True for a number that is neither NaN nor infinite (None and text are not)."""
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def format_value(value: Any, unit: str) -> str:
    """A value with a readable unit (seconds scaled to ns/µs/ms), or an em dash if absent."""
    if value is None or (isinstance(value, float | np.floating) and not math.isfinite(value)):
        return "—"
    value = float(value)
    for limit, name, scale in _UNIT_SCALES.get(unit, ()):
        if abs(value) < limit:
            return f"{value * scale:.3g} {name}"
    if unit == "bytes":
        for name, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(value) >= scale:
                return f"{value / scale:.3g} {name}"
    if unit == "fraction":
        return f"{value:.1%}"
    if 1e4 <= abs(value) < 1e9:  # counts and rates: whole numbers read better than 5.142e+04
        return f"{value:.0f} {unit}".rstrip()
    return f"{value:.4g} {unit}".rstrip()


def format_change(value: Any) -> str:
    """A relative change as a signed percentage (+12.3%), or an em dash if absent."""
    if not finite(value):
        return "—"
    return f"{float(value) * 100:+.1f}%"


def format_interval(low: Any, high: Any, fmt: Any = format_change) -> str:
    """``[low, high]`` with each bound formatted, or an em dash if either is absent."""
    if not (finite(low) and finite(high)):
        return "—"
    return f"[{fmt(low)}, {fmt(high)}]"


def fraction(value: Any) -> str:
    """A share as a percentage with one decimal."""
    return format_value(value, "fraction")


def points(value: Any) -> str:
    """A difference of two shares in percentage points (+1.2 pp)."""
    return f"{float(value) * 100:+.1f} pp" if finite(value) else "—"


def styled(value: float, unit: str, style: str) -> str:
    """``style`` "x": a ratio (3.1×); "num": a plain number; else the unit's own format."""
    if not finite(value):
        return "—"
    if style == "x":
        return f"{value:.3g}×"
    if style == "num":
        return f"{value:.4g}"
    return format_value(value, unit)


def with_ci(value: Any, low: Any, high: Any, fmt: Any) -> str:
    """``value [low, high]``, the interval only where there is one; an em dash without value."""
    if not finite(value):
        return "—"
    interval = format_interval(low, high, fmt)
    return fmt(value) if interval == "—" else f"{fmt(value)} {interval}"


def pair(value: Any) -> tuple[Any, Any]:
    """A stored ``(low, high)`` pair, or two Nones."""
    if isinstance(value, list | tuple | np.ndarray) and len(value) == 2:
        return value[0], value[1]
    return None, None


def jsonable(value: Any) -> Any:
    """Builtin JSON values: NaN/inf as null, numpy scalars as Python ones, tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def frame_records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    """A table's rows as JSON-ready dicts (none for a missing or empty table)."""
    if frame is None or frame.empty:
        return []
    return [jsonable(r) for r in frame.to_dict("records")]


def relative_to_results(path: str) -> str:
    """``.../raw/<suite>/<file>`` as ``raw/<suite>/<file>``: the same wherever results live."""
    parts = Path(path).parts
    return (
        Path(*parts[len(parts) - 1 - parts[::-1].index("raw") :]).as_posix()
        if "raw" in parts
        else path
    )


def link(path: str | Path | None, base_dir: Path) -> str | None:
    """``path`` relative to ``base_dir`` (for an href), or None when it lies elsewhere."""
    if path is None:
        return None
    try:
        return Path(path).resolve().relative_to(base_dir.resolve()).as_posix()
    except ValueError:
        return None


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters at a word, with an ellipsis when cut."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"
