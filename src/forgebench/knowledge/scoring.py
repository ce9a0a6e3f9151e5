"""Detection scored against the generator's truth: precision per kind, recall per kind and
variant, and how many look-alikes were flagged, each as counts (so each share gets its
exact interval) and as a share. A detection counts as correct only when its (kind,
identity) equals a true one; a count of detections is never a recall."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

Key = tuple[str, tuple]


def precision_counts(
    detected: set[Key], injected: Iterable[Key], kind: str | None = None
) -> tuple[int, int]:
    """(detections of ``kind`` or all that are true, detections)."""
    truth = set(injected)
    det = {d for d in detected if kind is None or d[0] == kind}
    return len(det & truth), len(det)


def recall_counts(
    detected: set[Key], injected: Iterable[Key], kind: str | None = None
) -> tuple[int, int]:
    """(true violations of ``kind`` or all that were detected, true violations)."""
    truth = [k for k in injected if kind is None or k[0] == kind]
    return sum(k in detected for k in truth), len(truth)


def counts_by_variant(
    detected: set[Key], labelled: Mapping[Key, str]
) -> dict[tuple[str, str], tuple[int, int]]:
    """(detected, total) of the labelled keys of each (kind, variant)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for key, variant in labelled.items():
        groups.setdefault((key[0], variant), [0, 0])
        groups[(key[0], variant)][0] += key in detected
        groups[(key[0], variant)][1] += 1
    return {g: (k, n) for g, (k, n) in groups.items()}


def _share(k: int, n: int) -> float:
    return k / n if n else math.nan


def precision(detected: set[Key], injected: Iterable[Key], kind: str | None = None) -> float:
    """Share of detections (of ``kind``, or all) that match a true violation; NaN when
    nothing was detected."""
    return _share(*precision_counts(detected, injected, kind))


def recall(detected: set[Key], injected: Iterable[Key], kind: str | None = None) -> float:
    return _share(*recall_counts(detected, injected, kind))


def recall_by_variant(
    detected: set[Key], injected: Mapping[Key, str]
) -> dict[tuple[str, str], float]:
    """Share of the true violations of each (kind, variant) that were detected."""
    return {g: _share(k, n) for g, (k, n) in counts_by_variant(detected, injected).items()}


def flagged_by_variant(
    detected: set[Key], lookalikes: Mapping[Key, str]
) -> dict[tuple[str, str], float]:
    """Share of the look-alikes of each (kind, variant) that were (wrongly) flagged."""
    return recall_by_variant(detected, lookalikes)


def paired_outcomes(
    a: set[Key], b: set[Key], violations: Iterable[Key], lookalikes: Iterable[Key]
) -> tuple[int, int, int]:
    """Two detectors judged on the same items: every true violation, every look-alike and
    every key either flagged. An item is right for a detector when it flags exactly the
    true violations. Returns (b right where a is wrong, a right where b is wrong, items)."""
    truth = set(violations)
    items = truth | set(lookalikes) | a | b
    gained = sum(((k in b) == (k in truth)) and ((k in a) != (k in truth)) for k in items)
    lost = sum(((k in a) == (k in truth)) and ((k in b) != (k in truth)) for k in items)
    return gained, lost, len(items)
