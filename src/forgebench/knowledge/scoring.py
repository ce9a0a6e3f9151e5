"""Detection scored against injected identities: precision per kind, recall per kind and
variant, and how many look-alikes were flagged. A detection counts as correct only when
its (kind, identity) equals an injected one; a count of detections is never a recall."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

Key = tuple[str, tuple]


def precision(detected: set[Key], injected: Iterable[Key], kind: str | None = None) -> float:
    """Share of detections (of ``kind``, or all) that match an injected violation; NaN
    when nothing was detected."""
    truth = set(injected)
    det = {d for d in detected if kind is None or d[0] == kind}
    return len(det & truth) / len(det) if det else math.nan


def recall_by_variant(
    detected: set[Key], injected: Mapping[Key, str]
) -> dict[tuple[str, str], float]:
    """Share of the injected violations of each (kind, variant) that were detected."""
    groups: dict[tuple[str, str], list[bool]] = {}
    for key, variant in injected.items():
        groups.setdefault((key[0], variant), []).append(key in detected)
    return {g: sum(v) / len(v) for g, v in groups.items()}


def recall(detected: set[Key], injected: Iterable[Key], kind: str | None = None) -> float:
    truth = [k for k in injected if kind is None or k[0] == kind]
    return sum(k in detected for k in truth) / len(truth) if truth else math.nan


def flagged_by_variant(
    detected: set[Key], lookalikes: Mapping[Key, str]
) -> dict[tuple[str, str], float]:
    """Share of the look-alikes of each (kind, variant) that were (wrongly) flagged."""
    return recall_by_variant(detected, lookalikes)
