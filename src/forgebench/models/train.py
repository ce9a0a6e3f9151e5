"""Brief causal-LM training within a wall-clock budget, with held-out perplexity measured
before and after, so later stages get a model that has learned something (or are told it
has not)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from forgebench.errors import ForgebenchError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

TRAINING_DEFAULTS: dict[str, Any] = {
    "time_budget_s": 120.0,
    "max_steps": 100000,
    "batch_size": 8,
    "seq_len": 128,
    "lr": 2e-3,
    "min_lr_ratio": 0.1,
    "warmup_steps": 10,
    "schedule": "cosine",
    "weight_decay": 0.1,
    "beta1": 0.9,
    "beta2": 0.95,
    "grad_clip": 1.0,
    "log_every": 10,
    "heldout_fraction": 0.02,
    "eval_tokens": 16384,
    "eval_batch_size": 8,
}


@dataclass(frozen=True)
class TrainingSettings:
    """How long and how to train; the schedule decays over whichever of ``max_steps`` and
    ``time_budget_s`` runs out first, so a time-limited run still ends at a low rate."""

    time_budget_s: float
    max_steps: int
    batch_size: int
    seq_len: int
    lr: float
    min_lr_ratio: float
    warmup_steps: int
    schedule: str
    weight_decay: float
    beta1: float
    beta2: float
    grad_clip: float
    log_every: int
    heldout_fraction: float
    eval_tokens: int
    eval_batch_size: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], key: str = "training") -> TrainingSettings:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - names)
        if unknown:
            raise ForgebenchError(f"{key}: unknown keys {unknown}; allowed: {sorted(names)}")
        s = cls(**{**TRAINING_DEFAULTS, **dict(cfg)})
        checks = [
            ("time_budget_s", s.time_budget_s >= 0, ">= 0"),
            ("max_steps", s.max_steps >= 0, ">= 0"),
            ("batch_size", s.batch_size >= 1, ">= 1"),
            ("seq_len", s.seq_len >= 2, ">= 2"),
            ("lr", s.lr > 0, "> 0"),
            ("min_lr_ratio", 0 <= s.min_lr_ratio <= 1, "in [0, 1]"),
            ("warmup_steps", s.warmup_steps >= 0, ">= 0"),
            ("schedule", s.schedule in ("cosine", "linear"), "cosine or linear"),
            ("grad_clip", s.grad_clip >= 0, ">= 0 (0: off)"),
            ("log_every", s.log_every >= 1, ">= 1"),
            ("heldout_fraction", 0 < s.heldout_fraction < 1, "in (0, 1)"),
            ("eval_tokens", s.eval_tokens >= 1, ">= 1"),
            ("eval_batch_size", s.eval_batch_size >= 1, ">= 1"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ForgebenchError(f"{key}.{name}: must be {allowed}, got {getattr(s, name)}")
        return s

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainingResult:
    """What one training run measured."""

    heldout_nll_before: float  # nats per token
    heldout_nll_after: float
    heldout_tokens: int
    steps: int
    tokens: int
    step_time_s: float  # time inside training steps only
    wall_s: float  # the whole loop, periodic logging included
    losses: list[float] = field(default_factory=list)
    stopped_by: str = "time"

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.step_time_s if self.step_time_s > 0 else math.nan

    @property
    def final_loss(self) -> float:
        """Mean training loss over the last (up to) 10 steps."""
        tail = self.losses[-10:]
        return sum(tail) / len(tail) if tail else math.nan


def pack(tokenizer: Any, texts: Sequence[str], eos_id: int) -> torch.Tensor:
    """Token ids of ``texts`` concatenated, each document followed by the end-of-text id."""
    import torch

    ids: list[int] = []
    # The backend tokenizer directly: documents longer than the model's context are fine
    # here (they are cut into windows), so no length warning.
    for enc in tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False):
        ids.extend(enc.ids)
        ids.append(eos_id)
    return torch.tensor(ids, dtype=torch.long)


def windows(ids: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Non-overlapping rows of ``seq_len`` tokens (the ragged tail dropped)."""
    n = ids.numel() // seq_len
    return ids[: n * seq_len].view(n, seq_len)


def heldout_nll(model: Any, ids: torch.Tensor, settings: TrainingSettings) -> tuple[float, int]:
    """Mean next-token negative log-likelihood (nats) over at most ``eval_tokens`` predicted
    held-out tokens, in windows of ``seq_len``; returns (nll, tokens scored)."""
    import torch
    import torch.nn.functional as F

    rows = windows(ids, settings.seq_len)
    per_row = settings.seq_len - 1
    rows = rows[: max(1, math.ceil(settings.eval_tokens / per_row))]
    if rows.numel() == 0:
        raise ForgebenchError(
            f"models: held-out text has {ids.numel()} tokens, fewer than one window of "
            f"training.seq_len={settings.seq_len}; raise training.heldout_fraction"
        )
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, rows.shape[0], settings.eval_batch_size):
            batch = rows[start : start + settings.eval_batch_size]
            logits = model(input_ids=batch).logits[:, :-1].float()
            target = batch[:, 1:]
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum"
            )
            total += float(loss)
            count += target.numel()
    model.train(was_training)
    return total / count, count


def lr_factor(step: int, progress: float, settings: TrainingSettings) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine or linear decay to
    ``min_lr_ratio`` as ``progress`` (0..1, steps or time, whichever is further) runs out."""
    warm = min(1.0, (step + 1) / settings.warmup_steps) if settings.warmup_steps else 1.0
    p = min(1.0, max(0.0, progress))
    decay = 0.5 * (1.0 + math.cos(math.pi * p)) if settings.schedule == "cosine" else 1.0 - p
    return warm * (settings.min_lr_ratio + (1.0 - settings.min_lr_ratio) * decay)


def train(
    model: Any,
    train_ids: torch.Tensor,
    heldout_ids: torch.Tensor,
    settings: TrainingSettings,
    *,
    seed: int,
    label: str = "model",
) -> TrainingResult:
    """Train ``model`` in place with AdamW on seeded shuffles of packed windows until the
    time budget or ``max_steps`` runs out; held-out NLL measured before and after."""
    import torch

    chunks = windows(train_ids, settings.seq_len)
    if chunks.shape[0] == 0:
        raise ForgebenchError(
            f"models: training text has {train_ids.numel()} tokens, fewer than one window "
            f"of training.seq_len={settings.seq_len}"
        )
    nll_before, n_eval = heldout_nll(model, heldout_ids, settings)
    log.info(
        "%s: held-out NLL before training %.4f nats (ppl %.1f) over %d tokens; "
        "%d training windows of %d tokens",
        label,
        nll_before,
        math.exp(nll_before),
        n_eval,
        chunks.shape[0],
        settings.seq_len,
    )
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": settings.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=settings.lr,
        betas=(settings.beta1, settings.beta2),
    )
    gen = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(chunks.shape[0], generator=gen)
    cursor = 0
    batch = min(settings.batch_size, chunks.shape[0])
    result = TrainingResult(nll_before, math.nan, n_eval, 0, 0, 0.0, 0.0)
    model.train()
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if result.steps >= settings.max_steps:
            result.stopped_by = "max_steps"
            break
        if elapsed >= settings.time_budget_s:
            result.stopped_by = "time"
            break
        time_progress = elapsed / settings.time_budget_s if settings.time_budget_s else 1.0
        step_progress = result.steps / settings.max_steps if settings.max_steps else 1.0
        factor = lr_factor(result.steps, max(time_progress, step_progress), settings)
        for group in opt.param_groups:
            group["lr"] = settings.lr * factor
        if cursor + batch > order.numel():
            order = torch.randperm(chunks.shape[0], generator=gen)
            cursor = 0
        x = chunks[order[cursor : cursor + batch]]
        cursor += batch
        t0 = time.perf_counter()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        if settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        value = float(loss.detach())
        result.step_time_s += time.perf_counter() - t0
        result.steps += 1
        result.tokens += x.numel()
        result.losses.append(value)
        if result.steps % settings.log_every == 0 or result.steps == 1:
            log.info(
                "%s: step %d loss %.4f lr %.2e %.0f tokens/s %.0f s",
                label,
                result.steps,
                value,
                settings.lr * factor,
                result.tokens_per_s,
                time.perf_counter() - start,
            )
        if not math.isfinite(value):
            result.stopped_by = "non-finite loss"
            log.warning("%s: loss is %s at step %d; stopping", label, value, result.steps)
            break
    result.wall_s = time.perf_counter() - start
    model.eval()
    result.heldout_nll_after, _ = heldout_nll(model, heldout_ids, settings)
    log.info(
        "%s: %d steps, %d tokens in %.1f s (%.0f tokens/s, stopped by %s); held-out NLL "
        "%.4f -> %.4f nats (ppl %.1f -> %.1f)",
        label,
        result.steps,
        result.tokens,
        result.wall_s,
        result.tokens_per_s,
        result.stopped_by,
        nll_before,
        result.heldout_nll_after,
        math.exp(nll_before),
        math.exp(min(result.heldout_nll_after, 700.0)),
    )
    return result
