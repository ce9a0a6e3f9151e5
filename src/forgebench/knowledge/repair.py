"""Repair proposals, the Guardian gate that decides them, and applying them to the store.

Proposer (one proposal per detection, from the stored graph only):

* allergy_conflict, future_date, missing_dosage, contradictory ("prescription"):
  remove the prescription row;
* contradictory ("diagnosis"): remove the newer (higher id) of the conflicting rows;
* duplicate_identity: merge, moving every edge of the higher id onto the lower and
  deleting the higher patient;
* orphaned_edge: remove the edge row;
* circular_dependency: remove the newest (highest id) link inside the cycle.

Guardian (explicit rules, first match wins):

1. reject: the proposal is not valid (applied in a savepoint with the other proposals of
   its kind, its target is still detected, or the kind gains a detection, in which case
   each is tried alone), or it would change more than ``max_rows`` rows;
2. apply: structural repairs that lose no clinical fact (orphaned edge removal, duplicate
   merge, cycle link removal);
3. quarantine: everything else (clinical facts a person must review): the row is moved out
   of the active graph into ``quarantine`` with the reason.

Applied and quarantined proposals change the store; rejected ones leave it as it was.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from forgebench.knowledge.detector import DETECTORS, Detection, detect

APPLY_KINDS = ("orphaned_edge", "duplicate_identity", "circular_dependency")
EDGE_TABLES = ("prescribed", "diagnosed_with", "allergic_to")


@dataclass(frozen=True)
class Proposal:
    detection: Detection
    action: str  # delete_row | merge_patients
    table: str
    row_ids: tuple[int, ...]  # delete_row: (id,); merge_patients: (keep, drop)


def propose(c: sqlite3.Connection, det: Detection) -> Proposal:
    """The repair proposed for one detection (see the module docstring)."""
    kind, ident = det
    if kind in ("allergy_conflict", "future_date", "missing_dosage"):
        return Proposal(det, "delete_row", "prescribed", (ident[0],))
    if kind == "duplicate_identity":
        return Proposal(det, "merge_patients", "patient", (ident[0], ident[1]))
    if kind == "orphaned_edge":
        return Proposal(det, "delete_row", ident[0], (ident[1],))
    if kind == "contradictory_facts":
        if ident[0] == "prescription":
            return Proposal(det, "delete_row", "prescribed", (ident[1],))
        row = c.execute(
            "SELECT max(id) FROM diagnosed_with WHERE patient_id = ? AND condition_id = ?",
            (ident[1], ident[2]),
        ).fetchone()[0]
        return Proposal(det, "delete_row", "diagnosed_with", (row,))
    if kind == "circular_dependency":
        marks = ",".join("?" * len(ident))
        row = c.execute(
            f"SELECT max(id) FROM condition_link WHERE child_id IN ({marks}) "
            f"AND parent_id IN ({marks})",
            (*ident, *ident),
        ).fetchone()[0]
        return Proposal(det, "delete_row", "condition_link", (row,))
    raise ValueError(f"no repair for kind {kind!r}")


def _execute(c: sqlite3.Connection, p: Proposal, reason: str | None) -> int:
    """Carry out ``p``; with ``reason``, deleted rows are kept in quarantine. Rows changed."""
    if p.action == "merge_patients":
        keep, drop = p.row_ids
        n = 0
        for table in EDGE_TABLES:
            n += c.execute(
                f"UPDATE {table} SET patient_id = ? WHERE patient_id = ?", (keep, drop)
            ).rowcount
        return n + c.execute("DELETE FROM patient WHERE id = ?", (drop,)).rowcount
    (row,) = p.row_ids
    if reason is not None:
        c.execute(
            "INSERT INTO quarantine (source, row_id, reason) VALUES (?, ?, ?)",
            (p.table, row, reason),
        )
    return c.execute(f"DELETE FROM {p.table} WHERE id = ?", (row,)).rowcount


def rows_touched(c: sqlite3.Connection, p: Proposal) -> int:
    """Rows the proposal would change (merges move every edge of the dropped patient)."""
    if p.action != "merge_patients":
        return 1
    drop = p.row_ids[1]
    return 1 + sum(
        c.execute(f"SELECT count(*) FROM {t} WHERE patient_id = ?", (drop,)).fetchone()[0]
        for t in EDGE_TABLES
    )


def _trial(
    c: sqlite3.Connection, batch: list[Proposal], before: set[Detection], kinds: tuple[str, ...]
) -> list[bool] | None:
    """Apply ``batch`` in a savepoint, detect ``kinds``, roll back. Per proposal: its target
    is gone. None when a detection appeared that was not in ``before`` (it cannot be
    pinned on one proposal of the batch) or the batch failed to execute."""
    c.execute("SAVEPOINT trial")
    try:
        for p in batch:
            _execute(c, p, None)
        after = detect(c, kinds)
    except sqlite3.Error:
        return None
    finally:
        c.execute("ROLLBACK TO trial")
        c.execute("RELEASE trial")
    if after - before:
        return None
    return [p.detection not in after for p in batch]


def validate(
    c: sqlite3.Connection, proposals: list[Proposal], before: set[Detection], kinds: tuple[str, ...]
) -> list[bool]:
    """Validity of each proposal: applied, its target is no longer detected and no
    detection of ``kinds`` appears that ``before`` lacks. The proposals are tried together
    first (one detection pass); if that batch adds a detection, each is tried alone."""
    together = _trial(c, proposals, before, kinds) if proposals else []
    if together is not None:
        return together
    return [bool(_trial(c, [p], before, kinds) == [True]) for p in proposals]


def is_valid_full(c: sqlite3.Connection, p: Proposal, before: set[Detection]) -> bool:
    """Proposal validity as scored: alone, target resolved, no new detection of any kind."""
    return validate(c, [p], before, tuple(DETECTORS))[0]


def guardian(
    c: sqlite3.Connection, proposals: list[Proposal], before: set[Detection], *, max_rows: int
) -> list[str]:
    """``apply``, ``quarantine`` or ``reject`` for each proposal (module docstring rules);
    validity is checked per kind against that kind's detections."""
    decisions = [""] * len(proposals)
    for kind in DETECTORS:
        idx = [i for i, p in enumerate(proposals) if p.detection[0] == kind]
        kind_before = {d for d in before if d[0] == kind}
        ok = validate(c, [proposals[i] for i in idx], kind_before, (kind,))
        for i, good in zip(idx, ok, strict=True):
            p = proposals[i]
            if not good or rows_touched(c, p) > max_rows:
                decisions[i] = "reject"
            else:
                decisions[i] = "apply" if kind in APPLY_KINDS else "quarantine"
    return decisions


def carry_out(c: sqlite3.Connection, p: Proposal, decision: str) -> None:
    """Apply or quarantine ``p`` (a rejected proposal changes nothing)."""
    if decision == "apply":
        _execute(c, p, None)
    elif decision == "quarantine":
        _execute(c, p, f"{p.detection[0]} {p.detection[1]}")
