"""Modular-arithmetic data for grokking experiments: every equation ``a ∘ b = c (mod p)``.

Each equation is a token sequence ``a, ∘, b, =`` with the answer ``c`` as the target, as
in Power et al. (2022) and the Grokfast reference code: operand tokens are ``0..p-1``,
``=`` is token ``p`` and ``∘`` is token ``p + 1``, so the vocabulary has ``p + 2`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

OPERATIONS = ("add", "sub", "mul", "div")


@dataclass(frozen=True)
class Split:
    """Training and validation equations: inputs ``(n, 4)`` int64 and targets ``(n,)``."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor


def vocab_size(modulus: int) -> int:
    """Operand tokens plus ``=`` and the operation token."""
    return modulus + 2


def equations(modulus: int, operation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All equations of ``operation`` mod ``modulus``: ``(inputs (n, 4), answers (n,))``.

    ``add``/``sub``/``mul`` use every pair ``0 <= a, b < p``; ``div`` (``a / b``, by
    Fermat's little theorem, so ``p`` must be prime) excludes ``b = 0``.
    """
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {OPERATIONS}, got {operation!r}")
    p = int(modulus)
    a = torch.arange(p)
    b = torch.arange(1, p) if operation == "div" else torch.arange(p)
    a, b = torch.cartesian_prod(a, b).T
    if operation == "add":
        c = (a + b) % p
    elif operation == "sub":
        c = (a - b) % p
    elif operation == "mul":
        c = (a * b) % p
    else:
        inverse = torch.tensor([pow(int(v), p - 2, p) for v in range(p)])
        c = (a * inverse[b]) % p
    eq = torch.full_like(a, p)
    op = torch.full_like(a, p + 1)
    return torch.stack([a, op, b, eq], dim=1), c


def split(modulus: int, operation: str, train_fraction: float, generator: torch.Generator) -> Split:
    """A random split of all equations; ``generator`` decides it, so a seed fixes it."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    x, y = equations(modulus, operation)
    n = x.shape[0]
    n_train = round(n * train_fraction)
    if not 0 < n_train < n:
        raise ValueError(f"train_fraction {train_fraction} leaves an empty side of {n} equations")
    order = torch.randperm(n, generator=generator)
    tr, va = order[:n_train], order[n_train:]
    return Split(x[tr], y[tr], x[va], y[va])
