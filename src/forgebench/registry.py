"""The benchmark registry: one name per benchmark, resolved lazily to ``module:function``.

Adding a benchmark means adding a module with ``BENCHMARK_VERSION`` and
``run(cfg, *, seed) -> DataFrame`` and one entry here plus its config section; the
generic rule and entry script run it by name.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


from forgebench.errors import ForgebenchError

BenchmarkFn = Callable[..., "pd.DataFrame"]


@dataclass(frozen=True)
class BenchmarkSpec:
    """What the workflow needs to know about a benchmark before importing it."""

    suite: str
    name: str
    target: str  # "package.module:function"
    timing_sensitive: bool  # claims every core so nothing runs beside its timings
    description: str
    # Workflow outputs it reads: "model" (the section's `model`, as results/models/<name>,
    # passed in as `model_dir`) and/or "datasets" (results/datasets, as `datasets_dir`).
    # "first_stage": a compression job's artifact with the first stage's configuration,
    # where one exists (the pipeline; as `first_stage_artifact`).
    needs: tuple[str, ...] = ()
    # The cases it writes, as fnmatch patterns; ``{key}`` stands for each value of the
    # benchmark config's list (or scalar) ``key``. Comparisons and targets are checked
    # against them when the workflow is parsed (``forgebench.workflow.check_references``).
    cases: tuple[str, ...] = ()
    # Sends its work to a server that may go away: gets the ``outage:`` limits
    # (forgebench.outage) in its config as ``outage``.
    drives_server: bool = False

    @property
    def key(self) -> str:
        return f"{self.suite}/{self.name}"

    def load(self) -> tuple[BenchmarkFn, int]:
        """Import the benchmark; return its function and ``BENCHMARK_VERSION``."""
        module_name, attr = self.target.split(":")
        module = importlib.import_module(module_name)
        return getattr(module, attr), int(module.BENCHMARK_VERSION)


class Registry:
    """Maps ``suite/name`` to specs; duplicates are rejected, misses suggest close names."""

    def __init__(self) -> None:
        self._specs: dict[str, BenchmarkSpec] = {}

    def register(self, spec: BenchmarkSpec) -> None:
        if spec.key in self._specs:
            raise ValueError(f"benchmark {spec.key!r} is registered twice")
        self._specs[spec.key] = spec

    def get(self, suite: str, name: str) -> BenchmarkSpec:
        key = f"{suite}/{name}"
        try:
            return self._specs[key]
        except KeyError:
            close = difflib.get_close_matches(key, self._specs, n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ForgebenchError(
                f"unknown benchmark {key!r}.{hint} "
                f"Known benchmarks: {', '.join(sorted(self._specs))}"
            ) from None

    def __iter__(self) -> Any:
        return iter(self._specs.values())

    def __contains__(self, key: object) -> bool:
        return key in self._specs


BENCHMARKS = Registry()
for _spec in (
    BenchmarkSpec(
        "network",
        "echo_latency",
        "forgebench.network.echo_latency:run",
        True,
        "TCP echo round trips on loopback: persistent, connection per request, concurrent",
        cases=(
            "persistent_{payload_sizes}B",
            "connect_per_request_{payload_sizes}B",
            "concurrent_{concurrency}x{payload_sizes}B",
        ),
    ),
    BenchmarkSpec(
        "network",
        "sockperf_compare",
        "forgebench.network.sockperf_compare:run",
        True,
        "our echo client/server against sockperf ping-pong, interleaved rounds",
        cases=("forgebench", "sockperf", "ratio"),
    ),
    BenchmarkSpec(
        "network",
        "p2p_mesh",
        "forgebench.network.p2p_mesh:run",
        True,
        "N loopback peers broadcasting by full mesh and by gossip, with churn: per-pair "
        "latency, delivery accounting, throughput",
        cases=("{modes}_n{peer_counts}_procs*",),
    ),
    BenchmarkSpec(
        "database",
        "n_plus_one",
        "forgebench.database.n_plus_one:run",
        True,
        "a page of users with posts and comment counts: N+1 queries vs JOIN vs batched IN",
        cases=("{backends}_n_plus_one", "{backends}_join", "{backends}_batched_in", "query:*"),
        drives_server=True,
    ),
    BenchmarkSpec(
        "database",
        "connection_pooling",
        "forgebench.database.connection_pooling:run",
        True,
        "W worker threads x Q short queries: connect per query vs a connection pool",
        cases=("{backends}_connect_per_query", "{backends}_pooled"),
        drives_server=True,
    ),
    BenchmarkSpec(
        "system",
        "import_time",
        "forgebench.system.import_time:run",
        True,
        "fresh-interpreter import time and slowest modules; warm vs cold bytecode cache; "
        "lazy vs eager CLI",
        cases=(
            "cold_cache_{cache_modules}",
            "warm_cache_{cache_modules}",
            "warm_cache_{modules}",
            "cli_eager",
            "cli_lazy",
        ),
    ),
    BenchmarkSpec(
        "system",
        "parallel_tests",
        "forgebench.system.parallel_tests:run",
        True,
        "a pytest suite sequential vs pytest-xdist -n 2 / auto, same outcomes checked",
        cases=("sequential", "xdist_{workers}"),
    ),
    BenchmarkSpec(
        "system",
        "file_operations",
        "forgebench.system.file_operations:run",
        True,
        "save/load/stat/delete of 4 KiB to 16 MiB files as Python does them, beside fio",
        cases=("python_*", "fio_*", "python_vs_fio_*"),
    ),
    BenchmarkSpec(
        "training",
        "grokfast",
        "forgebench.training.grokfast:run",
        True,
        "steps to generalise on a+b mod 97 with and without the Grokfast EMA gradient filter",
        cases=("baseline", "grokfast"),
    ),
    BenchmarkSpec(
        "harness",
        "sampler_overhead",
        "forgebench.harness.sampler_overhead:run",
        True,
        "slowdown of a fixed CPU-bound workload under the resource sampler",
        cases=("without_sampler", "with_sampler"),
    ),
    BenchmarkSpec(
        "harness",
        "statistics_calibration",
        "forgebench.harness.statistics_calibration:run",
        False,
        "the verdicts calibrated on synthetic data with a known truth: false-call and "
        "detection rates, interval coverage, history detection against ruptures and Otava",
        cases=("compare/*", "coverage/*", "history/*"),
    ),
    BenchmarkSpec(
        "service",
        "responsiveness",
        "forgebench.service.responsiveness:run",
        True,
        "a real Starlette/uvicorn service: every endpoint in closed loop, grades, error rates",
        needs=("datasets",),
        cases=("{endpoints}_{users}u", "*_{users}u"),
    ),
    BenchmarkSpec(
        "service",
        "load_scenarios",
        "forgebench.service.load_scenarios:run",
        True,
        "load, stress, spike and endurance with SLAs; open loop without coordinated omission",
        needs=("datasets",),
        cases=("load_closed_*u", "load_open_*rps", "stress", "spike", "endurance"),
    ),
    BenchmarkSpec(
        "service",
        "connections",
        "forgebench.service.connections:run",
        True,
        "N connections held open at once against the echo server and the service, and N "
        "users with think time; the SLA (p95, error share) judged at each N, stepped search",
        cases=(
            "echo_*conn",
            "http_*conn",
            "users_*u",
            "echo_search",
            "http_search",
            "users_search",
        ),
        drives_server=True,
    ),
    BenchmarkSpec(
        "service",
        "batch_throughput",
        "forgebench.service.batch:run",
        True,
        "the service's background jobs processing batches of database pages: verified pages "
        "per minute over a sustained window (batch-means interval), failure share",
        cases=("batch",),
        drives_server=True,
    ),
    BenchmarkSpec(
        "service",
        "faults",
        "forgebench.service.faults:run",
        True,
        "a worker and then the whole supervised service SIGKILLed under open-loop writes: "
        "availability, downtime and recovery per fault, acknowledged-write integrity",
        cases=("load", "worker_kill", "server_kill", "db_restart", "integrity"),
        drives_server=True,
    ),
    BenchmarkSpec(
        "models",
        "cognate_validation",
        "forgebench.models.cognate_validation:run",
        True,
        "the cognate model: parameter count vs 25,083,528, seeds, memory, inference and "
        "training tokens/s",
        cases=("cognate", "seeds"),
    ),
    BenchmarkSpec(
        "rag",
        "retrieval",
        "forgebench.rag.retrieval:run",
        True,
        "BM25, dense (exact + HNSW) and RRF hybrid retrieval over BoolQ: stage latency, "
        "concurrent throughput, index build cost, recall@k/MRR/nDCG@10",
        needs=("datasets",),
        cases=(
            "bm25",
            "dense_exact",
            "dense_hnsw",
            "hybrid",
            "hybrid_hnsw",
            "corpus",
            "embed*",
            "*_*clients",
        ),
    ),
    BenchmarkSpec(
        "service",
        "wrk_compare",
        "forgebench.service.wrk_compare:run",
        True,
        "our HTTP load generator against wrk on /health, interleaved rounds",
        cases=("forgebench", "wrk", "ratio"),
    ),
    BenchmarkSpec(
        "service",
        "answer_cache",
        "forgebench.service.cache_benchmark:run",
        False,  # its hit rate does not depend on timing; hit/miss latencies run beside others
        "the service's RAG answer cache (LRU) under a seeded Zipf(0.99) stream over every "
        "BoolQ question, through HTTP: hit rate with batch-means interval, curve over sizes, "
        "hit vs miss latency",
        needs=("datasets",),
        cases=("configured", "hit", "miss", "curve_*", "size_for_target"),
    ),
    BenchmarkSpec(
        "service",
        "normal_load",
        "forgebench.service.normal_load:run",
        True,
        "the service's CPU share at half its saturation rate measured in the same job "
        "(closed-loop probe, then open-loop repetitions under a sampler of its process)",
        needs=("datasets",),
        cases=("saturation", "normal"),
    ),
    BenchmarkSpec(
        "service",
        "scaling",
        "forgebench.service.scaling:run",
        True,
        "the service with 1, 2, 4 worker processes on one port and 1, 2, 4 threads per "
        "worker: saturation throughput and p99 per point with intervals, what saturates",
        cases=("horizontal_{workers}w", "vertical_{threads}t"),
    ),
    BenchmarkSpec(
        "service",
        "ui_interactions",
        "forgebench.service.ui_interactions:run",
        True,
        "the service's search page in headless Chromium: navigation timing, and input to next "
        "paint of keystrokes and of searches (fetch included), timed inside the page",
        needs=("datasets",),
        cases=("navigation", "keystroke", "search"),
    ),
    BenchmarkSpec(
        "compression",
        "seedlm_search",
        "forgebench.compression.seed_search_bench:run",
        True,
        "SeedLM seed search: ns per (block, seed) pair, exhaustive and bounded (exact), each "
        "against a floor of GEMMs of its own shapes",
        cases=("floor", "exhaustive", "bounded_floor", "bounded"),
    ),
    BenchmarkSpec(
        "compression",
        "lossless_codecs",
        "forgebench.compression.codecs:run",
        True,
        "zlib, lzma, bz2 and zstd on dataset text and model weight bytes: ratio, MB/s, memory",
        needs=("model", "datasets"),
        cases=("text_*", "weights_*"),
    ),
    BenchmarkSpec(
        "compression",
        "pipeline",
        "forgebench.compression.pipeline:run",
        False,
        "the original's BitNet -> SeedLM -> VPTQ -> codec chain: one artifact, its ratio from "
        "its bytes, error, perplexity",
        needs=("model", "datasets", "first_stage"),
        cases=("*",),
    ),
    BenchmarkSpec(
        "compression",
        "selector",
        "forgebench.compression.selector:run",
        False,
        "picks the method that meets a target ratio with the least perplexity loss, reading the "
        "compression jobs' artifacts and paired perplexity intervals",
        needs=("compressed",),
        cases=("selection", "{candidates.name}"),
    ),
    BenchmarkSpec(
        "eval",
        "overhead",
        "forgebench.evaluation.overhead:run",
        True,
        "our lm-eval job vs lm_eval.simple_evaluate called directly: arc_easy, limit 200, "
        "interleaved, identical answers required",
        needs=("model", "datasets"),
        cases=("forgebench_job", "lm_eval_direct", "overhead"),
    ),
    BenchmarkSpec(
        "eval",
        "code_scoring",
        "forgebench.evaluation.code_exec.scoring_benchmark:run",
        True,
        "HumanEval's references scored in the code sandbox with 1 worker and with 2, paired "
        "rounds, every reference must pass on every side",
        needs=("datasets",),
        cases=("workers={workers}", "speedup/workers={workers}"),
    ),
    BenchmarkSpec(
        "knowledge",
        "creativity",
        "forgebench.knowledge.creativity:run",
        False,
        "RAT and cross-domain bridges (embedding, model rerank, random) against known "
        "answers, a calibrated Guardian gate, hidden-link recovery",
        needs=("model", "datasets"),
        cases=(
            "embedding",
            "lm_rerank",
            "random",
            "chance",
            "ceiling",
            "vocabulary",
            "guardian",
            "concept_graph",
            "common_neighbours",
            "adamic_adar",
            "personalised_pagerank",
        ),
    ),
    BenchmarkSpec(
        "knowledge",
        "personalization",
        "forgebench.knowledge.personalization:run",
        False,
        "users with latent preferences: base, PPR, alpha and in-context rescoring against a "
        "random floor and an oracle; MAP, NDCG@10, Recall@20, token-cost delta",
        needs=("model",),
        cases=(
            "base_retrieval",
            "personalised_pagerank",
            "alpha_rescoring",
            "in_context",
            "random",
            "latent_oracle",
            "generator",
            "popularity_recency",
            "item_knn",
            "matrix_factorisation",
            "*/validation",
            "compared_vs_strongest_baseline",
        ),
    ),
    BenchmarkSpec(
        "knowledge",
        "repair",
        "forgebench.knowledge.repair_bench:run",
        False,
        "an SQLite medical graph with seven injected violation kinds and look-alikes: detect, "
        "propose, Guardian, repair, detect again; throughput by size",
        cases=("*@*", "patients_*"),
    ),
):
    BENCHMARKS.register(_spec)
