"""Job sizes for the scheduler: threads, memory and runtime from the configured work.

Each estimate is an upper bound from the config (durations, caps, row counts), grown by
the attempt number so a retried job asks for more, then capped by the profile's
``limits`` (cpus, mem_mb, runtime) so no request exceeds what a node offers. Light to
import: Snakemake evaluates these while it plans.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

BASE_MEM_MB = 512  # an interpreter with numpy, pandas and pyarrow loaded
MB_PER_MILLION_ROWS = 1000  # measured: 551k echo rows peaked at 560 MB (docs/performance.md)


def _echo_latency(cfg: Mapping[str, Any]) -> tuple[float, float]:
    payloads = len(cfg["payload_sizes"])
    per_scenario = {
        "persistent": payloads,
        "connect_per_request": payloads,
        "concurrent": payloads * len(cfg["concurrency"]),
    }
    cases = sum(per_scenario[s] for s in cfg["scenarios"]) * cfg["repetitions"]
    # A case stops at max(4 x min_duration, min_duration + 10 s) at the latest.
    seconds = cases * max(4 * cfg["min_duration_s"], cfg["min_duration_s"] + 10) + 30
    rows = cases * (cfg["max_requests"] + cfg["warmup_requests"])
    return seconds, rows


def _sockperf_compare(cfg: Mapping[str, Any]) -> tuple[float, float]:
    duration = max(1, round(cfg["duration_s"]))
    # per round: our side (warm-up + duration) and sockperf (duration + its ~2.2 s start)
    seconds = cfg["rounds"] * (2 * duration + cfg.get("warmup_s", 0.4) + 5) + 30
    rows = cfg["rounds"] * duration * 2 * 100_000  # loopback round trips stay under 100k/s
    return seconds, rows


def _sampler_overhead(cfg: Mapping[str, Any]) -> tuple[float, float]:
    runs = 2 * (cfg["rounds"] + cfg["warmup_rounds"])
    seconds = runs * cfg["workload_iterations"] * 1e-6 + 30  # ~0.25 us/iteration, 4x margin
    return seconds, runs


def _statistics_calibration(c: Mapping[str, Any]) -> tuple[float, float]:
    # Measured on one core: compare 0.3 ms + 12 us per value a side, 0.8 ms on repetitions;
    # a quantile interval 0.1 ms; detection 25 ms per 300-run history; ruptures Binseg
    # ~1.5 ms per prefix; Otava ~1.5 s per history and setting. 2x margin.
    cmp, cov, his, anc = c["comparisons"], c["coverage"], c["histories"], c["anchors"]
    seconds = 0.0
    if cmp.get("enabled", True):
        per_trial = sum(0.3e-3 + 12e-6 * n for n in cmp["sizes"]) * len(cmp["distributions"])
        per_trial += 0.8e-3 * len(cmp["repetitions"])
        seconds += cmp["trials"] * len(cmp["effects"]) * per_trial
    if cov.get("enabled", True):
        intervals = len(cov["quantiles"]) * len(cov["sizes"]) * 1e-4
        ratios = (len(cov["ratio_sizes"]) + len(cov["ratio_repetitions"])) * 1e-3
        seconds += cov["trials"] * (intervals + ratios)
    if his.get("enabled", True):
        shapes = 2 + len(his["spikes_sigma"]) + len(his["steps_sigma"])
        per_history = 25e-3 * his["runs"] / 300
        histories = shapes * his["replicates"] + his["family_metrics"] * his["family_replicates"]
        seconds += len(his["noise_cv"]) * histories * per_history
        series = len(anc["noise_cv"]) * (shapes * anc["replicates"] + anc["tuning_replicates"])
        rup, ota = anc["ruptures"], anc["otava"]
        if rup.get("enabled", True):
            seconds += series * his["runs"] / min(rup["stride"], 5) * 1.5e-3
        if ota.get("enabled", False):
            settings = len(anc["noise_cv"]) * (
                2 * shapes * anc["replicates"] + len(ota["max_pvalues"]) * anc["tuning_replicates"]
            )
            seconds += settings * 1.5 * his["runs"] / 300 / ota["workers"]
    rows = 40 * (len(cmp["effects"]) * len(cmp["sizes"]) * len(cmp["distributions"]) + 200)
    return 30 + 2 * seconds, rows


_LOAD_S_PER_ROW = 50e-6  # generate + insert/COPY per loaded row and backend (measured ~15 us)


def _database_n_plus_one(cfg: Mapping[str, Any]) -> tuple[float, float]:
    s = cfg["sizes"]
    rows_loaded = s["users"] + s["posts"] + s["comments"]
    # N+1 runs 1 + page_size + (posts on the page) statements; a page holds at most ~3x the
    # mean posts per user; 0.2 ms per statement bounds both backends (10-18 us SQLite,
    # 85 us median PostgreSQL); JOIN and batched IN together cost less than N+1.
    statements = 1 + cfg["page_size"] * (1 + 3 * s["posts"] / s["users"])
    rounds = cfg["executions"] + cfg["warmup"]
    per_backend = rows_loaded * _LOAD_S_PER_ROW + rounds * statements * 2e-4 * 2
    return 30 + len(cfg["backends"]) * per_backend, len(cfg["backends"]) * rounds * 3 * 2


def _database_connection_pooling(cfg: Mapping[str, Any]) -> tuple[float, float]:
    s = cfg["sizes"]
    rows_loaded = s["users"] + s["posts"] + s["comments"]
    per_phase = cfg["workers"] * (cfg["queries_per_worker"] + cfg["warmup_queries"])
    per_query = {"sqlite": 1e-3, "postgres": 0.04}  # ~4x measured wall per query
    seconds = 30 + sum(
        rows_loaded * _LOAD_S_PER_ROW + cfg["repetitions"] * per_phase * per_query[b]
        for b in cfg["backends"]
    )
    return seconds, len(cfg["backends"]) * 2 * cfg["repetitions"] * (per_phase + 1)


def _import_time(cfg: Mapping[str, Any]) -> tuple[float, float]:
    # Per run at most ~15 s warm (torch 5.6 s on loaded 2 cores), ~45 s cold (torch 19 s),
    # 20 s per CLI run (eager warm-up 13 s); each run is capped by timeout_s.
    modules = len(set(cfg["modules"]) | set(cfg["cache_modules"]))
    compared = cfg["rounds"] if (cfg["cache_modules"] or cfg["cli"]) else 0
    warm = modules * (1 + max(cfg["repetitions"], compared))  # warm-up round included
    cold = len(cfg["cache_modules"]) * cfg["rounds"]
    cli = 2 * (1 + cfg["rounds"]) if cfg["cli"] else 0
    runs = warm + cold + cli
    seconds = min(warm * 15 + cold * 45 + cli * 20, runs * cfg["timeout_s"]) + 30
    return seconds, runs * (3 + 2 * cfg["top_modules"])


def _parallel_tests(cfg: Mapping[str, Any]) -> tuple[float, float]:
    # One pytest process per case and round, each stopped at timeout_s; 5 rows a run.
    runs = (cfg["warmup_rounds"] + cfg["rounds"]) * (1 + len(cfg["workers"]))
    return runs * cfg["timeout_s"] + 30, runs * 5


def _file_operations(cfg: Mapping[str, Any]) -> tuple[float, float]:
    # Per round and size: our files' six ops and two fio jobs (each capped at timeout_s);
    # fsync of 1 MiB took up to ~15 ms on a loaded VM disk, so 50 ms a MiB is the bound.
    sizes, files = cfg["sizes"], cfg.get("files", 10)
    counts = files if isinstance(files, list) else [files] * len(sizes)
    rounds = cfg.get("warmup_rounds", 1) + cfg.get("rounds", 5)
    mib = sum(s * n for s, n in zip(sizes, counts, strict=False)) / 2**20
    per_round = 2 * (0.05 * mib + 0.02 * sum(counts)) + 2 * len(sizes)
    return rounds * per_round + 10, rounds * (6 * sum(counts) + 5 * len(sizes))


def _grokfast(cfg: Mapping[str, Any]) -> tuple[float, float]:
    # Every run to its budget at 4x the slowest CPU rate measured (~25 ps per multiply-add
    # plus ~8 ms per step); rows: the curve at every evaluation, 3 per run, 2 warm-up.
    n_eq = cfg["modulus"] ** 2
    macs_per_token = 12 * cfg["dim"] ** 2 * cfg["layers"]  # qkv 3d², out d², MLP 8d²
    batch = min(cfg["batch_size"], n_eq)
    step_s = 4 * (0.008 + 25e-12 * 3 * batch * 4 * macs_per_token)  # forward + backward
    eval_s = 4 * (0.005 + 25e-12 * n_eq * 4 * macs_per_token)  # every held-out equation
    evals = cfg["max_steps"] // cfg["eval_every"] + 1
    runs = 2 * cfg["seeds"]
    seconds = runs * (cfg["max_steps"] * step_s + evals * eval_s) + 60
    rows = runs * (2 * evals + 3) + 2
    return seconds, rows


_SERVICE_CLIENT_RPS = 30_000  # requests/s our client reaches on /health, idle machine


def _service_responsiveness(cfg: Mapping[str, Any]) -> tuple[float, float]:
    cases = len(cfg["endpoints"]) * len(cfg["users"])
    rag = cfg["startup_timeout_s"] if "rag" in cfg["endpoints"] else 0
    seconds = 30 + rag + cases * 2 * cfg["max_duration_s"]
    per_case = (
        cfg["warmup_queries"] + cfg["min_queries"] + _SERVICE_CLIENT_RPS * cfg["min_duration_s"]
    )
    return seconds, cases * (per_case + 20)


def _service_load_scenarios(cfg: Mapping[str, Any]) -> tuple[float, float]:
    s, e, sp = cfg["stress"], cfg["endurance"], cfg["spike"]
    steps = 1 + int(math.log(s["max_rate"] / s["start_rate"], s["factor"]))
    spike_s = sp["pre_s"] + sp["spike_s"] + sp["post_s"]
    load_cases = len(cfg["load"]["users"]) + len(cfg["load"]["rates"])
    seconds = (
        180
        + load_cases * cfg["max_duration_s"]
        + steps * (s["step_duration_s"] + cfg["timeout_s"])
        + spike_s
        + e["duration_s"]
        + e["warmup_s"]
    )
    rows = (
        _SERVICE_CLIENT_RPS * len(cfg["load"]["users"]) * cfg["min_duration_s"]
        + sum(cfg["load"]["rates"]) * cfg["min_duration_s"]
        + s["max_rate"] * s["step_duration_s"] * 2
        + sp["rate"] * (sp["pre_s"] + sp["post_s"] + sp["multiplier"] * sp["spike_s"])
        + e["rate"] * (e["duration_s"] + e["warmup_s"])
        + 5000
    )
    return seconds, rows


def _service_wrk_compare(cfg: Mapping[str, Any]) -> tuple[float, float]:
    return 30 + 2.2 * cfg["rounds"] * max(1, round(cfg["duration_s"])), 40 * cfg["rounds"]


def _service_answer_cache(cfg: Mapping[str, Any]) -> tuple[float, float]:
    # one connection in order: ~650 requests/s measured on the loaded 2-core machine
    requests = (cfg["warmup_requests"] + cfg["requests"]) * cfg["repetitions"]
    return 60 + requests / 250, 2 * requests + 200


def _service_normal_load(cfg: Mapping[str, Any]) -> tuple[float, float]:
    per_rep = cfg["duration_s"] + cfg["timeout_s"]
    return 90 + cfg["probe_s"] + cfg["timeout_s"] + cfg["repetitions"] * per_rep, 500


def _service_scaling(cfg: Mapping[str, Any]) -> tuple[float, float]:
    # every point's service starts at once (bounded by startup_timeout_s), then each
    # round of each point: closed loop, open loop, each over by at most a timeout
    points = len(cfg["workers"]) + len(cfg["threads"])
    per_round = cfg["closed_s"] + cfg["open_s"] + 2 * cfg["timeout_s"]
    return 90 + cfg["startup_timeout_s"] + cfg["repetitions"] * points * per_round, 500


_RAG_METHODS = ["bm25", "dense_exact", "dense_hnsw", "hybrid", "hybrid_hnsw"]


def _rag_retrieval(cfg: Mapping[str, Any]) -> tuple[float, float]:
    # Idle 2-core figures x ~2.5: imports + model load ~8 s, ~40 ms per passage embedded,
    # ~20 ms per query through all stages, per throughput query ~20 ms x clients/min(c, 2).
    q = int(cfg.get("max_queries", 200)) or 3270
    p = int(cfg.get("max_passages", 400)) or 2939
    w = min(int(cfg.get("warmup_queries", 10)), q)
    n = int(cfg.get("throughput_queries", 80))
    reps = int(cfg.get("repetitions", 2))
    conc = list(cfg.get("concurrency", [1, 2, 4]))
    builds = int(cfg.get("build_repetitions", 3))
    methods = list(cfg.get("methods", _RAG_METHODS))
    ks = len(cfg.get("recall_ks", [1, 5, 10, 20]))
    m = len(methods)
    hnsw = bool({"dense_hnsw", "hybrid_hnsw"} & set(methods)) or cfg.get("dense_index") == "hnsw"
    seconds = (
        25 + 0.1 * p + 0.05 * (w + q) + 0.05 * n * (1 + reps * sum(c / min(c, 2) for c in conc))
    )
    rows = (
        7
        + (2 + hnsw) * (2 * builds + 1)
        + (w + q) * (1 + 2 * m)
        + q * m * (ks + 2)
        + m * (ks + 2) * 3
        + ((q + 3) if "dense_hnsw" in methods else 0)
        + len(conc) * reps * (n + 1)
        + 1  # the pool's relevant fraction
    )
    efs = len(cfg.get("hnsw_ef_sweep", [16, 64])) if hnsw else 0
    rows += q * (1 + efs) + efs * (q + 3) if efs else 0  # the efSearch sweep at k = 10
    return seconds, rows


def _p2p_mesh(cfg: Mapping[str, Any]) -> tuple[float, float]:
    # Per process set: ~0.4 s to start and stop each peer process (64 took 16 s on a loaded
    # 2-core VM). Per phase: setup, link and report (~1 s + 50 ms per process), the send
    # window, then the deadline; a burst ends when nothing is in flight (~10k frames/s or
    # better) or at its deadline. Twice that, as a bound.
    seconds, rows = 30.0, 0
    for n in cfg["peer_counts"]:
        for placement in cfg["peer_processes"]:
            procs = n if placement == 0 or placement >= n else placement
            overhead = 1.0 + 0.05 * procs
            seconds += 0.4 * procs
            frames = {"mesh": n - 1, "gossip": n * cfg["fanout"]}
            for mode in cfg["modes"]:
                warm = cfg["warmup_messages"]
                if warm:
                    seconds += overhead + warm / cfg["rate_per_s"] + cfg["deadline_s"]
                    rows += warm * (n + 1) + 10
                paced = overhead + cfg["messages"] / cfg["rate_per_s"] + cfg["deadline_s"]
                burst = cfg["burst_messages"]
                burst_s = overhead + min(burst * frames[mode] * 1e-4, cfg["burst_deadline_s"])
                seconds += cfg["repetitions"] * (paced + (burst_s if burst else 0))
                rows += cfg["repetitions"] * (cfg["messages"] * (n + 1) + burst * n + 20)
    return 2 * seconds, rows


def _cognate_validation(cfg: Mapping[str, Any]) -> tuple[float, float]:
    from forgebench.models.estimates import validation_estimate

    seconds, rows, _ = validation_estimate(cfg)
    return seconds, rows


def _knowledge_creativity(c: Mapping[str, Any]) -> tuple[float, float]:
    seconds = (
        60
        + 0.005 * (c["max_unigrams"] + c["max_bigrams"])
        + 2.7 * c["shortlist"]
        + 2 * c["link_repetitions"]
        + 0.02 * c["graph_nodes"]
    )
    rows = 40 * 27 * len(c["finders"]) + 4 * c["link_repetitions"] * (len(c["link_ks"]) + 1) + 200
    return seconds, rows


def _knowledge_personalization(c: Mapping[str, Any]) -> tuple[float, float]:
    return 60 + c["users"] * (0.2 * c["shortlist"] + 0.1) + 0.002 * c["items"], c[
        "users"
    ] * 30 + 100


def _knowledge_repair(c: Mapping[str, Any]) -> tuple[float, float]:
    per_record = 3e-4 + (c["repetitions"] + 17 + c["validity_sample"]) * 3e-5
    return 30 + sum(n * per_record for n in c["sizes"]), 80 * len(c["sizes"])


def _eval_overhead(cfg: Mapping[str, Any]) -> tuple[float, float]:
    runs = 2 * (cfg["rounds"] + cfg["warmup_rounds"])
    return 60 + runs * min(cfg["timeout_s"], 4 * (10 + 0.2 * cfg["limit"])), runs * 3


def _eval_code_scoring(cfg: Mapping[str, Any]) -> tuple[float, float]:
    # measured: HumanEval's 164 references took 33-45 s with 1 worker, 17-24 s with 2, on a
    # loaded 2-core host (~0.27 s a program); each worker count once per round
    problems = cfg["limit"] or 164
    rounds = cfg["rounds"] + cfg["warmup_rounds"]
    return 10 + rounds * problems * 0.3 * sum(1 / w for w in cfg["workers"]), 3 * rounds


_CODEC_BYTES_PER_S = {"zlib": 8e6, "lzma": 1.5e6, "bz2": 4e6, "zstd": 1.5e6}


def _lossless_codecs(c: Mapping[str, Any]) -> tuple[float, float]:
    text = 9 * (c["text_bytes_per_dataset"] or 2.3e6) * ("text" in c["inputs"])
    weights = (c["weight_bytes"] or 1.1e8) * ("weights" in c["inputs"])
    seconds = 10 + sum(
        (c["repetitions"] + 2) * (text + weights) / _CODEC_BYTES_PER_S[k["codec"]]
        for k in c["codecs"]
    )
    return seconds, 200 * len(c["codecs"])


def _compression_pipeline(c: Mapping[str, Any]) -> tuple[float, float]:
    return 60 + 60 * len(c.get("stages", [])) + 0.05 * c["perplexity_tokens"], 50


def _compression_selector(c: Mapping[str, Any]) -> tuple[float, float]:
    # reads each candidate's artifact (digest-checked, ~0.1 GB for a 135M model) and
    # perplexity file; compresses nothing
    candidates = len(c.get("candidates", []))
    return 10 + 5 * candidates, 400


def _seedlm_search(c: Mapping[str, Any]) -> tuple[float, float]:
    pairs = c["blocks"] * (2 ** c["lfsr_bits"] - 1)
    rounds = c["rounds"] + c["warmup_rounds"]
    return 20 + rounds * pairs * 280e-9 + 0.5 * c["reference_blocks"], 10 + 4 * rounds


def _service_connections(cfg: Mapping[str, Any]) -> tuple[float, float]:
    # per level: connects, the hold, its last rounds' timeouts; two server starts (~30 s
    # each on the loaded machine) and a settle (30 s at most) between the HTTP kinds
    seconds, rows = 120.0, 0.0
    for kind in ("echo", "http", "users"):
        section = cfg.get(kind, {})
        pace = section.get("round_interval_s") or section.get("think_s") or 1
        for n in section.get("levels", []):
            seconds += section["hold_s"] + cfg["connect_timeout_s"] + cfg["timeout_s"] + 5
            rows += n * (section["hold_s"] / pace + 3) + 60
    return seconds + 30, rows


def _service_batch_throughput(cfg: Mapping[str, Any]) -> tuple[float, float]:
    span = cfg["warmup_s"] + cfg["duration_s"]
    return 60 + span + cfg["timeout_s"], span * 200 + 100  # jobs well under 200/s


def _service_faults(cfg: Mapping[str, Any]) -> tuple[float, float]:
    # the window, up to two group starts per cycle (~3 s each measured, 30 s allowed)
    seconds = 60 + cfg["duration_s"] + 30 * cfg["cycles"] + cfg["startup_timeout_s"]
    return seconds, 2.5 * cfg["rate"] * cfg["duration_s"] + 100  # a load and an integrity row


def _service_ui_interactions(cfg: Mapping[str, Any]) -> tuple[float, float]:
    # ~35 ms of wall per interaction measured on the loaded 2-core machine; 0.1 s allowed.
    # A question is typed up to max_typed_chars (BoolQ's are under 100 characters) + Enter.
    pages = cfg["repetitions"] + cfg["warmup_repetitions"]
    interactions = pages * cfg["queries_per_repetition"] * (min(cfg["max_typed_chars"], 100) + 1)
    return 60 + 0.1 * interactions, 5 * interactions + 10 * pages


ESTIMATES: dict[str, Callable[[Mapping[str, Any]], tuple[float, float]]] = {
    "network/echo_latency": _echo_latency,
    "network/sockperf_compare": _sockperf_compare,
    "network/p2p_mesh": _p2p_mesh,
    "harness/sampler_overhead": _sampler_overhead,
    "harness/statistics_calibration": _statistics_calibration,
    "database/n_plus_one": _database_n_plus_one,
    "database/connection_pooling": _database_connection_pooling,
    "system/import_time": _import_time,
    "system/parallel_tests": _parallel_tests,
    "system/file_operations": _file_operations,
    "training/grokfast": _grokfast,
    "service/responsiveness": _service_responsiveness,
    "service/load_scenarios": _service_load_scenarios,
    "service/wrk_compare": _service_wrk_compare,
    "service/answer_cache": _service_answer_cache,
    "service/normal_load": _service_normal_load,
    "service/scaling": _service_scaling,
    "rag/retrieval": _rag_retrieval,
    "models/cognate_validation": _cognate_validation,
    "knowledge/creativity": _knowledge_creativity,
    "knowledge/personalization": _knowledge_personalization,
    "knowledge/repair": _knowledge_repair,
    "eval/overhead": _eval_overhead,
    "eval/code_scoring": _eval_code_scoring,
    "compression/lossless_codecs": _lossless_codecs,
    "compression/pipeline": _compression_pipeline,
    "compression/selector": _compression_selector,
    "compression/seedlm_search": _seedlm_search,
    "service/connections": _service_connections,
    "service/batch_throughput": _service_batch_throughput,
    "service/faults": _service_faults,
    "service/ui_interactions": _service_ui_interactions,
}


# Memory a benchmark holds beyond its rows: torch and the model (measured ~0.5 GB peak).
EXTRA_MEM_MB = {
    "training/grokfast": 512,
    "rag/retrieval": 768,
    "models/cognate_validation": 1300,  # three 25M-parameter models and their optimiser
    "knowledge/creativity": 1024,  # the embedding model and the evaluation model
    "knowledge/personalization": 768,
    "compression/pipeline": 2048,  # the model, its stages' artifacts and calibration
    "compression/selector": 2048,
    "service/ui_interactions": 1024,  # Chromium's processes: a 1.47 GB tree peak measured
    "service/scaling": 1024,  # 10 workers of 6 services: a 1.36 GB tree peak measured
}


def _cap(value: int, limits: Mapping[str, Any], key: str) -> int:
    limit = limits.get(key)
    return min(value, int(limit)) if limit else value


def cap_runtime(minutes: int, limits: Mapping[str, Any]) -> int:
    return _cap(minutes, limits, "runtime")


def benchmark_resources(
    key: str, cfg: Mapping[str, Any], attempt: int, limits: Mapping[str, Any]
) -> dict[str, int]:
    """``mem_mb`` and ``runtime`` (minutes) of one benchmark job on its ``attempt``."""
    seconds, rows = ESTIMATES[key](cfg)
    mem_mb = BASE_MEM_MB + EXTRA_MEM_MB.get(key, 0) + math.ceil(rows / 1e6 * MB_PER_MILLION_ROWS)
    runtime = math.ceil(seconds / 60) + 1
    return {
        "mem_mb": _cap(mem_mb * attempt, limits, "mem_mb"),
        "runtime": _cap(runtime * attempt, limits, "runtime"),
    }


def model_build_resources(
    spec: Mapping[str, Any], attempt: int, limits: Mapping[str, Any]
) -> dict[str, int]:
    """``mem_mb`` and ``runtime`` (minutes) of materializing one model (a build trains)."""
    from forgebench.models.estimates import build_estimate

    seconds, rows, extra_mb = build_estimate(spec)
    mem_mb = BASE_MEM_MB + extra_mb + math.ceil(rows / 1e6 * MB_PER_MILLION_ROWS)
    return {
        "mem_mb": _cap(mem_mb * attempt, limits, "mem_mb"),
        "runtime": _cap((math.ceil(seconds / 60) + 1) * attempt, limits, "runtime"),
    }


# Documents per task and measured seconds per document on a 25M-parameter model (one
# thread, 20-document subsets, loaded 2-core VM); the estimate takes 4x.
_EVAL_DOCS = {
    "fb_arc_easy": 2376,
    "fb_arc_challenge": 1172,
    "fb_boolq": 3270,
    "fb_piqa": 1838,
    "fb_winogrande": 1267,
    "fb_hellaswag": 10042,
    "fb_gsm8k": 1319,
    "fb_mbpp": 500,
    "fb_humaneval": 164,
}
_EVAL_S_PER_DOC = {
    "fb_arc_easy": 0.94,
    "fb_arc_challenge": 0.93,
    "fb_boolq": 0.86,
    "fb_piqa": 0.39,
    "fb_winogrande": 0.71,
    "fb_hellaswag": 1.15,
    "fb_gsm8k": 8.7,
    "fb_mbpp": 1.15,
    "fb_humaneval": 1.6,
}
_GENERATIVE = ("fb_gsm8k", "fb_mbpp", "fb_humaneval")


#: An evaluation job's model, logits and lm-eval beside the base interpreter.
EVAL_MODEL_MB = 3584


def eval_resources(
    cfg: Mapping[str, Any], tasks: Sequence[str], attempt: int, limits: Mapping[str, Any]
) -> dict[str, int]:
    """``mem_mb`` and ``runtime`` (minutes) of one model's evaluation on ``tasks``, in turn
    in one process: the runtimes add up, memory is the largest task's."""
    # 3.71 GB peak RSS measured for the pretrained 135M model's job (fp32 weights, batches
    # of 16 with a 49,152-token vocabulary's logits, generation): room for that.
    seconds, mem_mb = 60.0, BASE_MEM_MB + EVAL_MODEL_MB
    for task in tasks:
        c = {**cfg, **(cfg.get("per_task") or {}).get(task, {})}
        n = _EVAL_DOCS.get(task, 20000)
        docs = min(n, c.get("limit") or c.get("subset_size") or n)
        gen = max(1.0, (c.get("max_gen_toks") or 1024) / 64) if task in _GENERATIVE else 1.0
        seconds += 4 * docs * _EVAL_S_PER_DOC.get(task, 9.0) * gen
        rows_mb = math.ceil(docs * 8 / 1e6 * MB_PER_MILLION_ROWS)
        mem_mb = max(mem_mb, BASE_MEM_MB + EVAL_MODEL_MB + rows_mb)
    return {
        "mem_mb": _cap(mem_mb * attempt, limits, "mem_mb"),
        "runtime": _cap((math.ceil(seconds / 60) + 1) * attempt, limits, "runtime"),
    }


#: Memory of one report worker process beside the main one: its interpreter, matplotlib
#: and the figure or samples it holds (244 MB measured on the default run).
REPORT_WORKER_MEM_MB = 300


def report_resources(
    input_mb: float, attempt: int, limits: Mapping[str, Any], workers: int = 1
) -> dict[str, int]:
    """The report holds every raw row in memory: ~10 bytes per row on disk, ~1 KB in memory.
    With ``workers`` > 1 (its threads) each worker process needs its own interpreter, and
    one of them reads the stored history run beside the main process's rows (636 MB for
    the default run's 7.2 MB of inputs, against 1,093 MB for the main process)."""
    mem_mb = BASE_MEM_MB + math.ceil(input_mb * 100)
    if workers > 1:
        mem_mb += workers * REPORT_WORKER_MEM_MB + math.ceil(input_mb * 60)
    runtime = 5 + math.ceil(input_mb / 10)
    return {
        "mem_mb": _cap(mem_mb * attempt, limits, "mem_mb"),
        "runtime": _cap(runtime * attempt, limits, "runtime"),
    }


def report_threads(cores: int | None, limits: Mapping[str, Any]) -> int:
    """Every core of the node for the report: it needs every other job's output, so it runs
    alone at the end of a run, on the critical path, with a worker process per thread."""
    return threads(True, cores, limits)


def threads(timing_sensitive: bool, cores: int | None, limits: Mapping[str, Any]) -> int:
    """Every core of the node for timing-sensitive jobs (nothing runs beside a timing), else 1.

    ``cores`` is ``workflow.cores``: the local core count, or unbounded (None or huge) under
    a cluster executor, where the profile's ``limits.cpus`` is the node's size.
    """
    if not timing_sensitive:
        return 1
    available = cores if cores and cores < 10_000 else None
    limit = limits.get("cpus")
    if available and limit:
        return min(available, int(limit))
    return int(available or limit or 1)
