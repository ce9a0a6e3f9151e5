"""The EvoMerge section: every individual's fitness with its interval and lineage, the
fittest against its best parent, and the evolution's wall time.

Why: "the best merge" is only a result if it beats its parents beyond noise; the section
shows the paired comparison on the same documents where the evolution recorded one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forgebench.report.cells import Cells
from forgebench.report.format import finite, format_interval, format_value, fraction, points

_EVOMERGE_GENERATION = re.compile(r"^gen(?P<generation>\d+):")


def evomerge_individuals(cells: Cells, lineage: Any = None) -> pd.DataFrame:
    """Every individual of every generation with its fitness and interval, origin and
    parents: from the ``fitness`` rows of suite evomerge (cases ``gen<g>:<name>``, and
    ``seed:<name>`` for the seed models, generation -1), completed from lineage.json
    where the rows say less."""
    known = _lineage_records(lineage)
    columns = ["suite", "benchmark", "generation", "name", "origin", "parents"]
    rows = []
    for bench in cells.benchmarks("evomerge"):
        for case in cells.cases("evomerge", bench):
            key = ("evomerge", bench, case, "fitness")
            if not cells.has(key):
                continue
            own = cells.params(key)
            name = str(own.get("name", case.split(":", 1)[-1]))
            params = {**known.get(name, {}), **own}
            seed = case.startswith("seed:")
            generation = params.get("generation")
            match = _EVOMERGE_GENERATION.search(case)
            if seed:
                generation = -1
            elif not isinstance(generation, int | float) and match:
                generation = int(match.group("generation"))
            low, high, _ = cells.interval(key)
            parents = params.get("parents") or []
            genome = params.get("describe", params.get("genome"))
            rows.append(
                {
                    "suite": "evomerge",
                    "benchmark": bench,
                    "generation": int(generation) if isinstance(generation, int | float) else 0,
                    "name": name,
                    "origin": "seed" if seed else str(params.get("origin", "—")),
                    "parents": [str(p) for p in parents] if isinstance(parents, list) else [],
                    "fitness": cells.value(key),
                    "ci_low": low,
                    "ci_high": high,
                    "status": cells.status(key),
                    "genome": genome
                    if isinstance(genome, str) or genome is None
                    else json.dumps(genome, sort_keys=True),
                }
            )
    frame = pd.DataFrame(
        rows, columns=[*columns, "fitness", "ci_low", "ci_high", "status", "genome"]
    )
    return frame.sort_values(["benchmark", "generation", "name"], kind="stable").reset_index(
        drop=True
    )


def _lineage_records(lineage: Any) -> dict[str, dict[str, Any]]:
    """lineage.json as name -> what it says of that individual: a mapping of name to
    object (as forgebench.evomerge.stages writes it), a list of objects with a ``name``,
    or ``{"individuals": [...]}``."""
    if isinstance(lineage, Mapping) and isinstance(lineage.get("individuals"), list):
        lineage = lineage["individuals"]
    if isinstance(lineage, list):
        return {str(r["name"]): dict(r) for r in lineage if isinstance(r, Mapping) and "name" in r}
    if isinstance(lineage, Mapping):
        return {str(k): dict(v) for k, v in lineage.items() if isinstance(v, Mapping)}
    return {}


def _fitness_text(fitness: Any, low: Any, high: Any) -> str:
    fmt = fraction
    return f"{fmt(fitness)} {format_interval(low, high, fmt)}".removesuffix(" —")


def _best_line(cells: Cells, individuals: pd.DataFrame) -> str:
    """The fittest individual against its best parent: the evolution's own choice and
    paired comparison (case ``best_vs_parent``) where recorded, else from the fitness
    rows and the parents they name."""
    ok = individuals[np.isfinite(individuals["fitness"].to_numpy(dtype=float))]
    bred = ok[ok["generation"] >= 0]
    if bred.empty:
        return "No individual has a fitness."
    by_name = ok.drop_duplicates("name").set_index("name")
    evo = ("evomerge", "evolution", "evolution", "best_fitness")
    chosen = cells.params(evo) if cells.has(evo) else {}
    best_name = chosen.get("best")
    if best_name not in by_name.index:
        top = bred.sort_values(["fitness", "name"], ascending=[False, True], kind="stable")
        best_name = str(top.iloc[0]["name"])
    best = by_name.loc[best_name]
    text = (
        f"Best: {best_name} (generation {best['generation']}), fitness "
        f"{_fitness_text(best['fitness'], best['ci_low'], best['ci_high'])}"
    )
    parent = chosen.get("best_parent")
    if parent not in by_name.index:
        parents = [p for p in best["parents"] if p in by_name.index]
        parent = str(by_name.loc[parents]["fitness"].idxmax()) if parents else None
    if parent is None:
        return f"{text}; no parent of it has a fitness (origin {best['origin']})."
    p = by_name.loc[parent]
    text += f"; its best parent {parent}: {_fitness_text(p['fitness'], p['ci_low'], p['ci_high'])}"
    delta = ("evomerge", "evolution", "best_vs_parent", "score_delta")
    if finite(cells.value(delta)):
        low, high, _ = cells.interval(delta)
        mcnemar = cells.value(("evomerge", "evolution", "best_vs_parent", "score_mcnemar_p"))
        p_value = cells.value(("evomerge", "evolution", "best_vs_parent", "score_delta_p"))
        return (
            f"{text}; paired on the same documents: difference {points(cells.value(delta))} "
            f"{format_interval(low, high, points)}, p {format_value(p_value, '')}"
            + (f", McNemar p {format_value(mcnemar, '')}" if finite(mcnemar) else "")
            + "."
        )
    overlap = finite(p["ci_high"]) and finite(best["ci_low"]) and best["ci_low"] <= p["ci_high"]
    return (
        f"{text}; difference {points(float(best['fitness']) - float(p['fitness']))}"
        + (" (intervals overlap)" if overlap else "")
        + "."
    )


def evomerge_section(cells: Cells, individuals: pd.DataFrame) -> dict[str, Any] | None:
    """Lineage table, the best individual against its best parent, the wall time."""
    if individuals.empty:
        return None
    lineage = [
        {
            "generation": "seed" if r["generation"] < 0 else str(r["generation"]),
            "name": r["name"],
            "origin": r["origin"],
            "parents": ", ".join(r["parents"]) or "—",
            "fitness": _fitness_text(r["fitness"], r["ci_low"], r["ci_high"])
            if finite(r["fitness"])
            else r["status"],
            "genome": r["genome"] if isinstance(r["genome"], str) and r["genome"] else "—",
        }
        for r in individuals.to_dict("records")
    ]
    wall = ("evomerge", "evolution", "evolution", "wall_time")
    bred = individuals[individuals["generation"] >= 0]
    return {
        "lineage": lineage,
        "best": _best_line(cells, individuals),
        "n_individuals": int(bred["name"].nunique()),
        "n_generations": int(bred["generation"].nunique()),
        "wall_time": format_value(cells.value(wall), "s")
        if finite(cells.value(wall))
        else (cells.status(wall) if cells.has(wall) else "—"),
    }


def default_lineage_path(paths: Sequence[str]) -> Path | None:
    """results/evomerge/lineage.json beside the raw tables' results/raw, if it exists."""
    for path in paths:
        parts = Path(path).parts
        if "raw" in parts:
            root = Path(*parts[: len(parts) - 1 - parts[::-1].index("raw")])
            candidate = root / "evomerge" / "lineage.json"
            return candidate if candidate.is_file() else None
    return None


def read_lineage(path: str | Path | None) -> Any:
    if path is None or not Path(path).is_file():
        return None
    return json.loads(Path(path).read_text())
