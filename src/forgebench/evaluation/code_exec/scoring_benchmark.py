"""Benchmark eval/code_scoring: HumanEval's reference solutions scored with 1 worker and with N.

Each round scores the same problems (canonical solution against the task's tests, as the
fb_humaneval metric receives them) once per worker count, in an order shuffled per round,
through ``score_problems`` (the pool lm-eval's metric uses). A round counts only if every side
scores every problem the same way and every reference passes; otherwise its rows are
``mismatch``. Rows: ``wall_time`` per side and round, ``speedup`` (1-worker time over N-worker
time) per round for each N > 1. Needs root (the sandbox); without it every row is
``unavailable``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from forgebench.evaluation.code_exec.passk import score_problems
from forgebench.evaluation.code_exec.sandbox import SandboxUnavailable, current_config
from forgebench.record import Recorder, utcnow

log = logging.getLogger(__name__)

BENCHMARK_VERSION = 1
SUITE, NAME = "eval", "code_scoring"


def case_name(workers: int) -> str:
    return f"workers={workers}"


def humaneval_references(datasets_dir: str | Path, limit: int | None) -> list[tuple[str, str]]:
    """(candidate, tests) per problem: prompt + canonical solution, tests + check(entry)."""
    frame = pd.read_parquet(Path(datasets_dir) / "humaneval" / "test.parquet")
    rows = frame.head(limit) if limit else frame
    return [
        (r.prompt + r.canonical_solution, f"{r.test}\ncheck({r.entry_point})")
        for r in rows.itertuples()
    ]


def _score(problems: list[tuple[str, str]], workers: int, timeout_s: float) -> list[bool]:
    cfg = replace(current_config(), workers=workers, timeout_s=timeout_s).validate()
    scores = score_problems([t for _, t in problems], [[c] for c, _ in problems], cfg)
    return [s.correct == 1 for s in scores]


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Paired rounds of the worker counts; wall times, per-round speed-up, mismatches.

    cfg keys: ``datasets_dir``, ``workers`` ([1, 2]), ``limit`` (null: all 164),
    ``rounds`` (5), ``warmup_rounds`` (1), ``timeout_s`` (10.0: CPU seconds per program)."""
    workers = [int(w) for w in cfg.get("workers", [1, 2])]
    base = min(workers)
    limit = cfg.get("limit")
    rounds, warmups = int(cfg.get("rounds", 5)), int(cfg.get("warmup_rounds", 1))
    timeout_s = float(cfg.get("timeout_s", 10.0))
    problems = humaneval_references(cfg["datasets_dir"], limit)
    params = {"problems": len(problems), "timeout_s": timeout_s}
    rng = random.Random(seed)
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    for rnd in range(warmups + rounds):
        warm = rnd < warmups
        rep = rnd if warm else rnd - warmups
        order = list(workers)
        rng.shuffle(order)
        got: dict[int, tuple[float, list[bool] | None, str, Any]] = {}
        for w in order:
            started = utcnow()
            t0 = time.perf_counter()
            try:
                passed, status = _score(problems, w, timeout_s), "ok"
            except SandboxUnavailable as exc:
                log.warning("round %d, %d workers: %s", rnd, w, exc)
                passed, status = None, "unavailable"
            got[w] = (time.perf_counter() - t0, passed, status, started)
        answers = [got[w][1] for w in workers]
        agree = all(a is not None and a == answers[0] and all(a) for a in answers)
        for w in workers:
            wall, passed, status, started = got[w]
            if status == "ok" and not agree:
                status = "mismatch"
                log.warning(
                    "round %d, %d workers: %d of %d references passed",
                    rnd,
                    w,
                    sum(passed or []),
                    len(problems),
                )
            rec.add(
                case_name(w),
                {**params, "workers": w},
                "wall_time",
                "s",
                False,
                wall if status == "ok" else None,
                repetition=rep,
                warmup=warm,
                status=status,
                started_at=started,
            )
        for w in workers:
            if w == base:
                continue
            both = got[w][2] == got[base][2] == "ok" and agree
            rec.add(
                f"speedup/{case_name(w)}",
                {**params, "workers": w, "baseline_workers": base},
                "speedup",
                "ratio",
                True,
                got[base][0] / got[w][0] if both else None,
                repetition=rep,
                warmup=warm,
                status="ok" if both else (got[w][2] if got[w][2] != "ok" else "mismatch"),
                started_at=got[w][3],
            )
        log.info(
            "[%d/%d]%s %s",
            rnd + 1,
            warmups + rounds,
            " warm-up" if warm else "",
            ", ".join(f"{w} workers {got[w][0]:.2f} s ({got[w][2]})" for w in workers),
        )
    return rec.frame()
