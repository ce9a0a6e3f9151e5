"""Benchmark eval/overhead: our evaluation job against calling lm-eval directly.

Both sides are fresh Python processes on the same model, task (fb_arc_easy over the
prepared Parquet), first ``limit`` documents, batch size, device and seeds, timed from
start to exit, in interleaved rounds (A B A B ...):

* ``lm_eval_direct``: ``lm_eval.simple_evaluate`` with the same task manager, saving the
  results and per-sample log through lm-eval's EvaluationTracker as its CLI does. (The
  CLI itself cannot be used: it always indexes lm-eval's ~200 built-in task folders and
  cannot bind our data files, so it would do different work.)
* ``forgebench_job``: ``python -m forgebench.evaluation.runner``, which calls
  ``forgebench.evaluation.runner.evaluate`` as the workflow's evaluation job does (the
  Snakemake script wrapper around it is not timed).

A round counts only if both sides report identical metric values and identical
per-document results; otherwise its rows are ``mismatch``. Rows: ``wall_time`` per side
and round, ``overhead`` (percent of lm-eval's time) per round; warm-up rounds are kept
with warmup=True.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.evaluation.runner import OFFLINE_ENV, output_paths
from forgebench.record import Recorder, utcnow

log = logging.getLogger(__name__)

BENCHMARK_VERSION = 1
SUITE, NAME = "eval", "overhead"
DIRECT, OURS = "lm_eval_direct", "forgebench_job"
KEY = "suites.eval.benchmarks.overhead"

# The direct side: what `lm_eval run --output_path D --log_samples` does after evaluating.
_DIRECT = r"""
import json, sys
from pathlib import Path
spec = json.loads(sys.argv[1])
import lm_eval
from lm_eval.loggers import EvaluationTracker
from forgebench.evaluation.tasks import task_manager
tracker = EvaluationTracker(output_path=spec["out"])
results = lm_eval.simple_evaluate(
    model=spec["backend"], model_args={"pretrained": spec["model_dir"]}, tasks=[spec["task"]],
    batch_size=spec["batch_size"], device=spec["device"], limit=spec["limit"],
    bootstrap_iters=spec["bootstrap_iters"], log_samples=True,
    task_manager=task_manager(Path(spec["datasets_dir"])), evaluation_tracker=tracker,
    random_seed=spec["seed"], numpy_random_seed=spec["seed"], torch_random_seed=spec["seed"],
    fewshot_random_seed=spec["seed"],
)
samples = results.pop("samples")
tracker.save_results_aggregated(results=results, samples=samples)
for name in results["configs"]:
    tracker.save_results_samples(task_name=name, samples=samples[name])
"""


def _settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    out = {
        "model_dir": str(cfg.get("model_dir") or ""),
        "datasets_dir": str(cfg.get("datasets_dir") or ""),
        "task": str(cfg.get("task", "fb_arc_easy")),
        "limit": int(cfg.get("limit", 200)),
        "batch_size": int(cfg.get("batch_size", 16)),
        "device": str(cfg.get("device", "cpu")),
        "backend": str(cfg.get("backend", "hf")),
        "bootstrap_iters": int(cfg.get("bootstrap_iters", 1000)),
        "rounds": int(cfg.get("rounds", 5)),
        "warmup_rounds": int(cfg.get("warmup_rounds", 1)),
        "timeout_s": float(cfg.get("timeout_s", 600)),
    }
    model_dir = Path(out["model_dir"])
    if not out["model_dir"] or not (model_dir / "config.json").is_file():
        raise ForgebenchError(
            f"{KEY}.model: {out['model_dir']!r} is not a Hugging Face model folder "
            "(no config.json); the workflow builds the named model first"
        )
    if not out["datasets_dir"] or not Path(out["datasets_dir"]).is_dir():
        raise ForgebenchError(
            f"{KEY}.datasets_dir: {out['datasets_dir']!r} is not a folder of prepared datasets"
        )
    for key in ("limit", "batch_size", "rounds"):
        if out[key] < 1:
            raise ForgebenchError(f"{KEY}.{key} must be >= 1, got {out[key]}")
    if out["warmup_rounds"] < 0:
        raise ForgebenchError(f"{KEY}.warmup_rounds must be >= 0, got {out['warmup_rounds']}")
    return out


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({name: "1" for name in OFFLINE_ENV})
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    return env


def _command(side: str, s: Mapping[str, Any], out: Path, seed: int) -> list[str]:
    if side == DIRECT:
        spec = {
            k: s[k]
            for k in (
                "model_dir",
                "datasets_dir",
                "task",
                "limit",
                "batch_size",
                "device",
                "backend",
                "bootstrap_iters",
            )
        }
        spec.update(out=str(out), seed=seed)
        return [sys.executable, "-c", _DIRECT, json.dumps(spec)]
    cfg = {
        "backend": s["backend"],
        "device": s["device"],
        "batch_size": s["batch_size"],
        "limit": s["limit"],
        "subset_size": None,
        "max_gen_toks": None,
        "bootstrap_iters": s["bootstrap_iters"],
        "allow_online": False,
    }
    return [
        sys.executable,
        "-m",
        "forgebench.evaluation.runner",
        "--model-dir",
        s["model_dir"],
        "--model",
        "overhead",
        "--task",
        s["task"],
        "--config",
        json.dumps(cfg),
        "--datasets-dir",
        s["datasets_dir"],
        "--out-dir",
        str(out),
        "--seed",
        str(seed),
    ]


def _answers(side: str, out: Path, task: str) -> tuple[dict[str, float], list[tuple]]:
    """(task metrics, per-document (doc_id, doc_hash, metric values)) a side wrote."""
    if side == DIRECT:
        results_file = sorted(out.rglob("results_*.json"))[-1]
        samples_file = sorted(out.rglob(f"samples_{task}_*.jsonl"))[-1]
    else:
        ours = output_paths(out, "overhead")
        results_file = ours.results_json(task)
        samples_file = ours.lm_eval_dir(task) / f"samples_{task}.jsonl"
    res = json.loads(results_file.read_text(encoding="utf-8"))["results"][task]
    metrics = {k: v for k, v in res.items() if "," in k and isinstance(v, int | float)}
    docs = []
    for line in samples_file.read_text(encoding="utf-8").splitlines():
        s = json.loads(line)
        docs.append((s["doc_id"], s["doc_hash"], s["filter"], tuple(s[m] for m in s["metrics"])))
    return metrics, sorted(docs)


def _run_side(side: str, s: Mapping[str, Any], work: Path, seed: int, tag: str) -> dict[str, Any]:
    out = work / f"{tag}_{side}"
    cmd = _command(side, s, out, seed)
    started_at = utcnow()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, env=_env(), capture_output=True, text=True, timeout=s["timeout_s"], check=False
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "wall": math.nan, "started_at": started_at}
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        log.warning("%s exited %d: %s", side, proc.returncode, proc.stderr[-2000:])
        return {"status": "error:NonZeroExit", "wall": math.nan, "started_at": started_at}
    try:
        metrics, docs = _answers(side, out, s["task"])
    except (OSError, KeyError, IndexError, ValueError) as exc:
        log.warning("%s: could not read its answers: %s", side, exc)
        return {"status": f"error:{type(exc).__name__}", "wall": math.nan, "started_at": started_at}
    return {
        "status": "ok",
        "wall": wall,
        "metrics": metrics,
        "docs": docs,
        "started_at": started_at,
    }


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Interleaved rounds of both sides; wall times, per-round overhead, mismatches."""
    s = _settings(cfg)
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    params = {k: s[k] for k in ("task", "limit", "batch_size", "device", "backend")}
    total = s["warmup_rounds"] + s["rounds"]
    with tempfile.TemporaryDirectory(prefix="fb-eval-overhead-") as tmp:
        work = Path(tmp)
        for i in range(total):
            warm = i < s["warmup_rounds"]
            rep = i if warm else i - s["warmup_rounds"]
            got = {side: _run_side(side, s, work, seed, f"r{i}") for side in (DIRECT, OURS)}
            a, b = got[DIRECT], got[OURS]
            status = {side: got[side]["status"] for side in got}
            if a["status"] == b["status"] == "ok":
                same = a["metrics"] == b["metrics"] and a["docs"] == b["docs"]
                if not same:
                    diff = {
                        k: (a["metrics"].get(k), b["metrics"].get(k))
                        for k in set(a["metrics"]) | set(b["metrics"])
                        if a["metrics"].get(k) != b["metrics"].get(k)
                    }
                    log.warning(
                        "round %d: answers differ: %s (documents equal: %s)",
                        i,
                        diff,
                        a["docs"] == b["docs"],
                    )
                    status = {DIRECT: "mismatch", OURS: "mismatch"}
            for side in (DIRECT, OURS):
                ok = status[side] == "ok"
                rec.add(
                    side,
                    params,
                    "wall_time",
                    "s",
                    False,
                    got[side]["wall"] if ok else None,
                    repetition=rep,
                    warmup=warm,
                    status=status[side],
                    started_at=got[side]["started_at"],
                )
            both = status[DIRECT] == status[OURS] == "ok"
            pct = (b["wall"] / a["wall"] - 1.0) * 100.0 if both else None
            failed = next((st for st in status.values() if st != "ok"), "ok")
            rec.add(
                OURS,
                params,
                "overhead",
                "percent",
                False,
                pct,
                repetition=rep,
                warmup=warm,
                status=failed,
                started_at=a["started_at"],
            )
            log.info(
                "[%d/%d]%s lm_eval %s, forgebench %s, overhead %s",
                i + 1,
                total,
                " warm-up" if warm else "",
                f"{a['wall']:.2f} s" if status[DIRECT] == "ok" else status[DIRECT],
                f"{b['wall']:.2f} s" if status[OURS] == "ok" else status[OURS],
                f"{pct:+.1f}%" if pct is not None else failed,
            )
    return rec.frame()
