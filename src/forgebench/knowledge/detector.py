"""The violation detector: reads only the stored graph (SQL over the store), never the
injector's records. Each detection is ``(kind, identity)`` with the identity the scorer
matches against the injected ones:

* allergy_conflict ``(prescription id,)``: the prescribed drug contains an allergen the
  patient is recorded as allergic to.
* duplicate_identity ``(low patient id, high patient id)``: equal birth date and equal name
  after case-folding, removing punctuation and collapsing whitespace.
* future_date ``(prescription id,)``: dated after the store's as-of date.
* missing_dosage ``(prescription id,)``: dosage NULL or only whitespace.
* orphaned_edge ``(table, row id)``: an edge whose patient, drug, allergen or condition
  does not exist.
* contradictory_facts ``("diagnosis", patient, condition)``: both confirmed and ruled out;
  ``("prescription", id)``: prescribed before the patient's birth.
* circular_dependency ``(sorted condition ids)``: a strongly connected component of the
  condition links with more than one node, or a self-link.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable

from forgebench.knowledge.medical_graph import KINDS, normalise_name

Detection = tuple[str, tuple]


def allergy_conflict(c: sqlite3.Connection) -> set[tuple]:
    rows = c.execute(
        "SELECT DISTINCT p.id FROM prescribed p JOIN drug d ON d.id = p.drug_id "
        "JOIN allergic_to a ON a.patient_id = p.patient_id AND a.allergen_id = d.allergen_id"
    )
    return {(r[0],) for r in rows}


def duplicate_identity(c: sqlite3.Connection) -> set[tuple]:
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for pid, name, born in c.execute("SELECT id, name, birth_date FROM patient"):
        groups[(normalise_name(name), born)].append(pid)
    out = set()
    for ids in groups.values():
        ids.sort()
        out.update((a, b) for i, a in enumerate(ids) for b in ids[i + 1 :])
    return out


def future_date(c: sqlite3.Connection) -> set[tuple]:
    rows = c.execute(
        "SELECT id FROM prescribed WHERE date > (SELECT value FROM meta WHERE key = 'as_of')"
    )
    return {(r[0],) for r in rows}


def missing_dosage(c: sqlite3.Connection) -> set[tuple]:
    rows = c.execute("SELECT id FROM prescribed WHERE dosage IS NULL OR trim(dosage) = ''")
    return {(r[0],) for r in rows}


_ORPHAN_CHECKS = (
    ("prescribed", "patient_id", "patient"),
    ("prescribed", "drug_id", "drug"),
    ("diagnosed_with", "patient_id", "patient"),
    ("diagnosed_with", "condition_id", "condition"),
    ("allergic_to", "patient_id", "patient"),
    ("allergic_to", "allergen_id", "allergen"),
    ("condition_link", "child_id", "condition"),
    ("condition_link", "parent_id", "condition"),
)


def orphaned_edge(c: sqlite3.Connection) -> set[tuple]:
    out = set()
    for table, column, target in _ORPHAN_CHECKS:
        rows = c.execute(
            f"SELECT e.id FROM {table} e LEFT JOIN {target} t ON t.id = e.{column} "
            "WHERE t.id IS NULL"
        )
        out.update((table, r[0]) for r in rows)
    return out


def contradictory_facts(c: sqlite3.Connection) -> set[tuple]:
    rows = c.execute(
        "SELECT patient_id, condition_id FROM diagnosed_with GROUP BY patient_id, condition_id "
        "HAVING sum(status = 'confirmed') > 0 AND sum(status = 'ruled_out') > 0"
    )
    out: set[tuple] = {("diagnosis", p, k) for p, k in rows}
    rows = c.execute(
        "SELECT p.id FROM prescribed p JOIN patient t ON t.id = p.patient_id "
        "WHERE p.date < t.birth_date"
    )
    out.update(("prescription", r[0]) for r in rows)
    return out


def strongly_connected(edges: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Tarjan's algorithm, iterative (cycles may be long, recursion limits are not)."""
    graph: dict[int, list[int]] = defaultdict(list)
    for a, b in edges:
        graph[a].append(b)
        graph.setdefault(b, [])
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    out: list[list[int]] = []
    counter = 0
    for root in list(graph):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            recurse = False
            nbrs = graph[node]
            while i < len(nbrs):
                nxt = nbrs[i]
                i += 1
                if nxt not in index:
                    work.append((node, i))
                    work.append((nxt, 0))
                    recurse = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if recurse:
                continue
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                out.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


def circular_dependency(c: sqlite3.Connection) -> set[tuple]:
    edges = list(c.execute("SELECT child_id, parent_id FROM condition_link"))
    selfloops = {(a,) for a, b in edges if a == b}
    return {tuple(comp) for comp in strongly_connected(edges) if len(comp) > 1} | selfloops


DETECTORS = {
    "allergy_conflict": allergy_conflict,
    "duplicate_identity": duplicate_identity,
    "future_date": future_date,
    "missing_dosage": missing_dosage,
    "orphaned_edge": orphaned_edge,
    "contradictory_facts": contradictory_facts,
    "circular_dependency": circular_dependency,
}
assert tuple(DETECTORS) == KINDS


def detect(c: sqlite3.Connection, kinds: Iterable[str] = KINDS) -> set[Detection]:
    """Every violation of the given kinds in the store."""
    return {(k, ident) for k in kinds for ident in DETECTORS[k](c)}
