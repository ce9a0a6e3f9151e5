"""Grokfast: steps and wall time to generalise on modular arithmetic, with and without the
EMA gradient filter of Lee et al. (2024, "Grokfast: Accelerated Grokking by Amplifying
Slow Gradients", arXiv:2405.20233).

A small transformer learns ``a ∘ b mod p`` from a fraction of all equations and is
trained until its accuracy on the held-out equations reaches ``threshold``. It memorises
the training set early and generalises much later ("grokking"); the filter adds an
exponential moving average of past gradients to each gradient (amplifying their slow
component), which the paper reports shortens the delay about 40-fold.

Both cases, ``baseline`` and ``grokfast``, train from the same run seed, so the same data
split, batch order and initial weights, with the same optimiser, schedule and step
budget; the only difference is the filter. Before a seed's runs count, the two sides'
initial weights and split are checked to be identical (status ``mismatch`` otherwise).
The order of the two sides alternates by seed, so slow phases of the machine do not
favour one side in wall time.

Rows, per seed (``repetition`` = seed index) and case:

* ``steps_to_generalize`` (steps, lower is better): the first evaluated step at which
  validation accuracy was >= ``threshold`` (evaluation every ``eval_every`` steps, so an
  upper bound on the exact crossing within that resolution). A run that never got there
  within ``max_steps`` is status ``censored`` and its value is the censoring time, the
  budget ``max_steps``: the event had not happened by then. Medians over seeds come from
  the Kaplan-Meier estimate (``forgebench.stats.km_median_ratio_ci``), never from
  dropping or averaging censored runs.
* ``time_to_generalize`` (s): wall time of the training steps up to that step (periodic
  evaluation excluded: it is measurement, identical on both sides), censored likewise at
  the time spent on the whole budget.
* ``time_per_step`` (s): training time / steps run; shows the filter's own cost.
* ``train_acc`` and ``val_acc`` (fraction, ``sample`` = step): the curve at every
  evaluation. ``train_acc`` is the accuracy on the training batches since the previous
  evaluation (measured before each update), ``val_acc`` on every held-out equation.
* ``time_per_step`` rows with ``warmup=True``: a few steps per side before the first
  measured run, so one-off start-up costs do not land in the first run's time.

Run seeds derive from the workflow seed: ``SeedSequence([seed, i])`` for seed index i.
On CUDA some kernels (embedding backward) are not bitwise deterministic.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from forgebench.errors import ForgebenchError
from forgebench.record import Recorder, status_for, utcnow
from forgebench.training import modular_data
from forgebench.training.transformer import Decoder

BENCHMARK_VERSION = 1
SUITE, NAME = "training", "grokfast"
CFG_KEY = f"suites.{SUITE}.benchmarks.{NAME}"
CASES = ("baseline", "grokfast")
SEQ_LEN = 4  # a, op, b, =
_EVAL_CHUNK = 8192  # held-out equations per forward pass when evaluating
WARMUP_STEPS = 3  # per side, before any measured run; kept as warmup rows

log = logging.getLogger(__name__)


class EmaGradFilter:
    """Grokfast-EMA: ``m = alpha * m + (1 - alpha) * g``, then ``g = g + lamb * m``.

    Call :meth:`apply` between ``loss.backward()`` and ``optimizer.step()``. The average
    starts at the first gradient (as the reference code does), so the first filtered
    gradient is ``(1 + lamb) * g``. Parameters without a gradient are left alone.
    """

    def __init__(self, params: Iterable[nn.Parameter], alpha: float, lamb: float) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha!r}")
        self.params = [p for p in params if p.requires_grad]
        self.alpha = float(alpha)
        self.lamb = float(lamb)
        self.ema: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def apply(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            m = self.ema.get(i)
            if m is None:
                m = self.ema[i] = p.grad.detach().clone()
            else:
                m.mul_(self.alpha).add_(p.grad, alpha=1.0 - self.alpha)
            p.grad.add_(m, alpha=self.lamb)


@dataclass(frozen=True)
class Settings:
    """The benchmark's config section, checked; one instance per run of ``run``."""

    modulus: int
    operation: str
    train_fraction: float
    dim: int
    layers: int
    heads: int
    optimizer: str
    lr: float
    beta1: float
    beta2: float
    weight_decay: float
    warmup_steps: int
    batch_size: int
    alpha: float
    lamb: float
    threshold: float
    max_steps: int
    eval_every: int
    seeds: int
    device: str
    threads: int | None = None

    def params(self, case: str) -> dict[str, Any]:
        """The row params of ``case``: every setting, and whether the filter is on (the
        caller adds the device actually used and the thread count)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("seeds", "threads")}
        out["filter"] = "ema" if case == "grokfast" else "none"
        return out


def settings(cfg: Mapping[str, Any]) -> Settings:
    """Read and check ``cfg``; every mistake names its config key."""
    try:
        s = Settings(
            modulus=int(cfg["modulus"]),
            operation=str(cfg["operation"]),
            train_fraction=float(cfg["train_fraction"]),
            dim=int(cfg["dim"]),
            layers=int(cfg["layers"]),
            heads=int(cfg["heads"]),
            optimizer=str(cfg["optimizer"]),
            lr=float(cfg["lr"]),
            beta1=float(cfg["beta1"]),
            beta2=float(cfg["beta2"]),
            weight_decay=float(cfg["weight_decay"]),
            warmup_steps=int(cfg["warmup_steps"]),
            batch_size=int(cfg["batch_size"]),
            alpha=float(cfg["filter_alpha"]),
            lamb=float(cfg["filter_lambda"]),
            threshold=float(cfg["threshold"]),
            max_steps=int(cfg["max_steps"]),
            eval_every=int(cfg["eval_every"]),
            seeds=int(cfg["seeds"]),
            device=str(cfg.get("device", "auto")),
            threads=None if cfg.get("threads") is None else int(cfg["threads"]),
        )
    except KeyError as exc:
        raise ForgebenchError(f"{CFG_KEY}.{exc.args[0]}: missing (see the schema)") from None
    checks = [
        ("modulus", s.modulus >= 3, ">= 3"),
        ("operation", s.operation in modular_data.OPERATIONS, f"one of {modular_data.OPERATIONS}"),
        ("train_fraction", 0.0 < s.train_fraction < 1.0, "in (0, 1)"),
        ("dim", s.dim >= 1 and s.heads >= 1 and s.dim % s.heads == 0, "a multiple of heads"),
        ("layers", s.layers >= 1, ">= 1"),
        ("optimizer", s.optimizer in ("adam", "adamw"), "adam or adamw"),
        ("lr", s.lr > 0, "> 0"),
        ("beta1", 0 <= s.beta1 < 1 and 0 <= s.beta2 < 1, "beta1 and beta2 in [0, 1)"),
        ("weight_decay", s.weight_decay >= 0, ">= 0"),
        ("warmup_steps", s.warmup_steps >= 0, ">= 0"),
        ("batch_size", s.batch_size >= 1, ">= 1"),
        ("filter_alpha", 0 <= s.alpha < 1, "in [0, 1)"),
        ("filter_lambda", s.lamb >= 0, ">= 0"),
        ("threshold", 0 < s.threshold <= 1, "in (0, 1]"),
        ("max_steps", s.max_steps >= 1, ">= 1"),
        ("eval_every", s.eval_every >= 1, ">= 1"),
        ("seeds", s.seeds >= 1, ">= 1"),
        ("device", s.device in ("auto", "cpu", "cuda"), "auto, cpu or cuda"),
        ("threads", s.threads is None or s.threads >= 1, ">= 1"),
    ]
    for key, ok, allowed in checks:
        if not ok:
            raise ForgebenchError(f"{CFG_KEY}.{key}: got {cfg.get(key)!r}, allowed: {allowed}")
    if s.operation == "div" and any(
        s.modulus % k == 0 for k in range(2, math.isqrt(s.modulus) + 1)
    ):
        raise ForgebenchError(f"{CFG_KEY}.modulus: {s.modulus} is not prime, needed for div")
    return s


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when torch sees a GPU; ``cuda`` without one is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ForgebenchError(
            f"{CFG_KEY}.device: 'cuda' requested but torch {torch.__version__} sees no CUDA "
            "device; use 'auto' or 'cpu'"
        )
    return torch.device(name)


def run_seed(seed: int, index: int) -> int:
    """The seed of run ``index``: independent streams from one workflow seed."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


@dataclass
class RunResult:
    """One training run: when it generalised (None: censored) and its curve."""

    generalized_at: int | None
    steps_run: int
    train_time_s: float
    time_to_event_s: float
    final_val_acc: float
    fingerprint: str
    final_digest: str = ""
    curve: list[tuple[int, float, float]] = field(default_factory=list)


def fingerprint(model: nn.Module, data: modular_data.Split | None = None) -> str:
    """Digest of the weights (and the split), to prove both sides start alike."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    if data is not None:
        for t in (data.train_x, data.train_y, data.val_x, data.val_y):
            h.update(t.numpy().tobytes())
    return h.hexdigest()


def _optimizer(s: Settings, model: nn.Module) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if s.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=s.lr, betas=(s.beta1, s.beta2), weight_decay=s.weight_decay)


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for start in range(0, x.shape[0], _EVAL_CHUNK):
        logits = model(x[start : start + _EVAL_CHUNK])
        correct += int((logits.argmax(-1) == y[start : start + _EVAL_CHUNK]).sum())
    model.train()
    return correct / x.shape[0]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(
    s: Settings, seed: int, *, use_filter: bool, device: torch.device, max_steps: int | None = None
) -> RunResult:
    """Train one model from ``seed`` until validation accuracy >= threshold or the budget.

    Everything random (split, initial weights, batch order) comes from ``seed``; the
    filter draws nothing, so both sides see identical data and weights.
    """
    budget = s.max_steps if max_steps is None else int(max_steps)
    gen = torch.Generator().manual_seed(seed)
    data = modular_data.split(s.modulus, s.operation, s.train_fraction, gen)
    torch.manual_seed(seed)
    model = Decoder(modular_data.vocab_size(s.modulus), s.dim, s.layers, s.heads, SEQ_LEN)
    digest = fingerprint(model, data)
    model.to(device)
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    val_x, val_y = data.val_x.to(device), data.val_y.to(device)
    opt = _optimizer(s, model)
    warm = max(1, s.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warm))
    grad_filter = EmaGradFilter(model.parameters(), s.alpha, s.lamb) if use_filter else None
    n_train = train_x.shape[0]
    batch = min(s.batch_size, n_train)

    out = RunResult(None, 0, 0.0, math.nan, math.nan, digest)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    order = torch.randperm(n_train, generator=gen).to(device)
    pos = 0
    model.train()
    _sync(device)
    t0 = time.perf_counter()
    for step in range(1, budget + 1):
        if pos >= n_train:  # a new epoch: reshuffle, as the reference code does
            order = torch.randperm(n_train, generator=gen).to(device)
            pos = 0
        idx = order[pos : pos + batch]
        pos += batch
        logits = model(train_x[idx])
        loss = F.cross_entropy(logits, train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_filter is not None:
            grad_filter.apply()
        opt.step()
        sched.step()
        correct += (logits.detach().argmax(-1) == train_y[idx]).sum()
        seen += idx.shape[0]
        if step % s.eval_every and step != budget:
            continue
        _sync(device)
        out.train_time_s += time.perf_counter() - t0
        out.steps_run = step
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {float(loss)} at step {step}")
        train_acc = int(correct) / seen
        val_acc = _accuracy(model, val_x, val_y)
        out.curve.append((step, train_acc, val_acc))
        out.final_val_acc = val_acc
        correct.zero_()
        seen = 0
        if val_acc >= s.threshold:
            out.generalized_at = step
            out.time_to_event_s = out.train_time_s
            break
        _sync(device)
        t0 = time.perf_counter()
    out.final_digest = fingerprint(model)
    return out


def _record_run(
    rec: Recorder,
    s: Settings,
    case: str,
    params: Mapping[str, Any],
    rep: int,
    result: RunResult | None,
    status: str,
    started_at: Any,
) -> None:
    """The summary rows of one run (and its curve when it ran)."""

    def add(metric: str, unit: str, higher: bool, value: float, row_status: str) -> None:
        ok_or_censored = row_status in ("ok", "censored")
        rec.add(
            case,
            params,
            metric,
            unit,
            higher,
            value if ok_or_censored else math.nan,
            repetition=rep,
            status=row_status,
            started_at=started_at,
        )

    if result is None:
        for metric, unit in (("steps_to_generalize", "steps"), ("time_to_generalize", "s")):
            add(metric, unit, False, math.nan, status)
        return
    if status == "ok" and result.generalized_at is None:
        status = "censored"
    if status == "censored":
        add("steps_to_generalize", "steps", False, float(s.max_steps), status)
        add("time_to_generalize", "s", False, result.train_time_s, status)
    else:
        add("steps_to_generalize", "steps", False, float(result.generalized_at or 0), status)
        add("time_to_generalize", "s", False, result.time_to_event_s, status)
    if result.steps_run:
        per_step = result.train_time_s / result.steps_run
        add("time_per_step", "s", False, per_step, "ok" if status != "mismatch" else status)
    for step, train_acc, val_acc in result.curve:
        for metric, value in (("train_acc", train_acc), ("val_acc", val_acc)):
            rec.add(
                case,
                params,
                metric,
                "fraction",
                True,
                value,
                repetition=rep,
                sample=step,
                started_at=started_at,
            )


def measure(s: Settings, *, seed: int, device: torch.device) -> pd.DataFrame:
    """Both cases for every seed; a failed run is a row with its status, never dropped."""
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    where = {"device": str(device), "threads": torch.get_num_threads()}
    params = {case: {**s.params(case), **where} for case in CASES}
    # Warm-up: the first steps of a process pay one-off costs (lazy imports, allocator,
    # kernel selection) that would land in whichever run came first.
    for case in CASES:
        started_at = utcnow()
        steps = min(WARMUP_STEPS, s.max_steps)
        try:
            warm = train(
                s, run_seed(seed, 0), use_filter=case == "grokfast", device=device, max_steps=steps
            )
            value, status = warm.train_time_s / warm.steps_run, "ok"
        except ForgebenchError:
            raise
        except Exception as exc:  # the measured runs will fail alike and say why
            value, status = math.nan, status_for(exc)
        rec.add(
            case,
            params[case],
            "time_per_step",
            "s",
            False,
            value,
            warmup=True,
            status=status,
            started_at=started_at,
        )
    order_rng = np.random.default_rng(seed)
    for rep in range(s.seeds):
        rs = run_seed(seed, rep)
        cases = list(CASES) if order_rng.integers(2) == 0 else list(reversed(CASES))
        results: dict[str, tuple[RunResult | None, str, Any]] = {}
        for case in cases:
            started_at = utcnow()
            try:
                result = train(s, rs, use_filter=case == "grokfast", device=device)
                status = "ok"
            except ForgebenchError:
                raise
            except Exception as exc:  # every failed run is a row with its status
                log.warning("seed %d %s failed: %s: %s", rep, case, type(exc).__name__, exc)
                result, status = None, status_for(exc)
            results[case] = (result, status, started_at)
            if result is not None:
                log.info(
                    "[%d/%d] seed %d %s: %s after %d steps, %.1f s (%.1f ms/step), val acc %.3f",
                    rep * len(CASES) + len(results),
                    s.seeds * len(CASES),
                    rep,
                    case,
                    "generalised" if result.generalized_at else "censored",
                    result.steps_run,
                    result.train_time_s,
                    1e3 * result.train_time_s / max(1, result.steps_run),
                    result.final_val_acc,
                )
        prints = {r[0].fingerprint for r in results.values() if r[0] is not None}
        for case in CASES:
            result, status, started_at = results[case]
            if len(prints) > 1 and status == "ok":
                log.warning("seed %d: the two sides started from different weights or data", rep)
                status = "mismatch"
            _record_run(rec, s, case, params[case], rep, result, status, started_at)
    return rec.frame()


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Train baseline and Grokfast runs for every seed; see the module docstring."""
    s = settings(cfg)
    device = resolve_device(s.device)
    previous = torch.get_num_threads()
    if s.threads is not None:
        torch.set_num_threads(s.threads)
    log.info(
        "grokfast: %s mod %d, dim %d x %d layers, %s wd %g, budget %d steps, %d seeds on %s "
        "(%d threads)",
        s.operation,
        s.modulus,
        s.dim,
        s.layers,
        s.optimizer,
        s.weight_decay,
        s.max_steps,
        s.seeds,
        device,
        torch.get_num_threads(),
    )
    try:
        return measure(s, seed=seed, device=device)
    finally:
        torch.set_num_threads(previous)
