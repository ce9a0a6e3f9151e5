"""Two violation detectors that read only the stored graph (SQL over the store): never the
generator's records, code or constants (forgebench.knowledge.medical_graph shares none of
this module's rules, formats or word lists, and this module imports nothing from it).
Each detection is ``(kind, identity)`` with the identity the scorer matches against the
generator's truth.

``rules_only``: each rule reads one row's fields literally, as a schema check would.

* allergy_conflict ``(prescription id,)``: the prescribed drug contains an allergen the
  patient is recorded as allergic to.
* duplicate_identity ``(low patient id, high patient id)``: equal birth date and equal name
  after case-folding, removing punctuation and collapsing whitespace.
* future_date ``(prescription id,)``: the stored date sorts after the as-of date (text
  comparison, right for ISO dates only).
* missing_dosage ``(prescription id,)``: dosage NULL or only whitespace.
* orphaned_edge ``(table, row id)``: an edge whose patient, drug, allergen or condition
  does not exist.
* contradictory_facts ``("diagnosis", patient, condition)``: statuses ``confirmed`` and
  ``ruled_out`` both present (exact spelling); ``("prescription", id)``: stored date sorts
  before the birth date.
* circular_dependency ``(sorted condition ids)``: a strongly connected component of the
  condition links with more than one node, or a self-link.

``rules_plus_context`` (the default): the same rules, with the context a clerk would use.
Dates are read in the formats this module knows (``DATE_FORMATS``; an unreadable date
decides nothing); statuses are compared case- and separator-insensitively; a dosage that
is a placeholder (``DOSAGE_PLACEHOLDERS``) is missing; two patients born the same day are
one person when their names have the same words in any order, or are one edit apart and
the graph agrees (the same non-empty allergy set, or a drug prescribed to both).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, datetime

Detection = tuple[str, tuple]
KINDS = (
    "allergy_conflict",
    "duplicate_identity",
    "future_date",
    "missing_dosage",
    "orphaned_edge",
    "contradictory_facts",
    "circular_dependency",
)
DATE_FORMATS = ("%Y-%m-%d", "%d %B %Y", "%B %d, %Y", "%d.%m.%Y", "%m/%d/%Y")
DOSAGE_PLACEHOLDERS = ("n/a", "na", "none", "nil", "-", "--", "?", "unknown", "not recorded")
_ISO = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"


def _as_of(c: sqlite3.Connection) -> str:
    return c.execute("SELECT value FROM meta WHERE key = 'as_of'").fetchone()[0]


def read_date(text: str | None) -> date | None:
    """``text`` in the first of DATE_FORMATS that reads it; None when none does."""
    if not text:
        return None
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    return None


def name_words(name: str) -> list[str]:
    """Case-folded words of a name, punctuation dropped."""
    return "".join(ch if ch.isalnum() else " " for ch in name.casefold()).split()


def one_edit_apart(a: str, b: str) -> bool:
    """Levenshtein distance exactly one (a substitution, insertion or deletion)."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i + (len(a) == len(b)) :] == b[i + 1 :]


def allergy_conflict(c: sqlite3.Connection) -> set[tuple]:
    rows = c.execute(
        "SELECT DISTINCT p.id FROM prescribed p JOIN drug d ON d.id = p.drug_id "
        "JOIN allergic_to a ON a.patient_id = p.patient_id AND a.allergen_id = d.allergen_id"
    )
    return {(r[0],) for r in rows}


def duplicate_identity(c: sqlite3.Connection) -> set[tuple]:
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for pid, name, born in c.execute("SELECT id, name, birth_date FROM patient"):
        groups[(" ".join(name_words(name)), born)].append(pid)
    out = set()
    for ids in groups.values():
        ids.sort()
        out.update((a, b) for i, a in enumerate(ids) for b in ids[i + 1 :])
    return out


def future_date(c: sqlite3.Connection) -> set[tuple]:
    rows = c.execute("SELECT id FROM prescribed WHERE date > ?", (_as_of(c),))
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


RULES_ONLY: dict[str, Callable[[sqlite3.Connection], set[tuple]]] = {
    "allergy_conflict": allergy_conflict,
    "duplicate_identity": duplicate_identity,
    "future_date": future_date,
    "missing_dosage": missing_dosage,
    "orphaned_edge": orphaned_edge,
    "contradictory_facts": contradictory_facts,
    "circular_dependency": circular_dependency,
}


def _graph_agrees(c: sqlite3.Connection, a: int, b: int) -> bool:
    """Two records describe one person by their neighbourhood: the same non-empty allergy
    set, or a drug prescribed to both."""
    allergies = [
        {r[0] for r in c.execute("SELECT allergen_id FROM allergic_to WHERE patient_id = ?", (p,))}
        for p in (a, b)
    ]
    if allergies[0] and allergies[0] == allergies[1]:
        return True
    shared = c.execute(
        "SELECT 1 FROM prescribed x JOIN prescribed y ON x.drug_id = y.drug_id "
        "WHERE x.patient_id = ? AND y.patient_id = ? LIMIT 1",
        (a, b),
    ).fetchone()
    return shared is not None


def duplicate_identity_in_context(c: sqlite3.Connection) -> set[tuple]:
    by_birth: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for pid, name, born in c.execute("SELECT id, name, birth_date FROM patient"):
        by_birth[born].append((pid, " ".join(sorted(name_words(name)))))
    out = set()
    for people in by_birth.values():
        for i, (a, ka) in enumerate(people):
            for b, kb in people[i + 1 :]:
                if ka == kb or (one_edit_apart(ka, kb) and _graph_agrees(c, a, b)):
                    out.add((min(a, b), max(a, b)))
    return out


def _read_dates(c: sqlite3.Connection, sql: str) -> list[tuple]:
    return [(*rest, read_date(text)) for *rest, text in c.execute(sql)]


def future_date_in_context(c: sqlite3.Connection) -> set[tuple]:
    as_of = date.fromisoformat(_as_of(c))
    rows = _read_dates(c, f"SELECT id, date FROM prescribed WHERE date NOT GLOB '{_ISO}'")
    out = {(r,) for r, d in rows if d is not None and d > as_of}
    iso = c.execute(
        f"SELECT id FROM prescribed WHERE date GLOB '{_ISO}' AND date > ?", (_as_of(c),)
    )
    return out | {(r[0],) for r in iso}


def missing_dosage_in_context(c: sqlite3.Connection) -> set[tuple]:
    marks = ",".join("?" * len(DOSAGE_PLACEHOLDERS))
    rows = c.execute(
        "SELECT id FROM prescribed WHERE dosage IS NULL OR trim(dosage) = '' "
        f"OR lower(trim(dosage)) IN ({marks})",
        DOSAGE_PLACEHOLDERS,
    )
    return {(r[0],) for r in rows}


_STATUS = "replace(replace(lower(trim(status)), ' ', '_'), '-', '_')"


def contradictory_facts_in_context(c: sqlite3.Connection) -> set[tuple]:
    rows = c.execute(
        "SELECT patient_id, condition_id FROM diagnosed_with GROUP BY patient_id, condition_id "
        f"HAVING sum({_STATUS} = 'confirmed') > 0 AND sum({_STATUS} = 'ruled_out') > 0"
    )
    out: set[tuple] = {("diagnosis", p, k) for p, k in rows}
    iso = c.execute(
        "SELECT p.id FROM prescribed p JOIN patient t ON t.id = p.patient_id "
        f"WHERE p.date GLOB '{_ISO}' AND p.date < t.birth_date"
    )
    out.update(("prescription", r[0]) for r in iso)
    rows = _read_dates(
        c,
        "SELECT p.id, t.birth_date, p.date FROM prescribed p JOIN patient t "
        f"ON t.id = p.patient_id WHERE p.date NOT GLOB '{_ISO}'",
    )
    for rid, born, when in rows:
        if when is not None and when < date.fromisoformat(born):
            out.add(("prescription", rid))
    return out


DETECTORS: dict[str, Callable[[sqlite3.Connection], set[tuple]]] = {
    **RULES_ONLY,
    "duplicate_identity": duplicate_identity_in_context,
    "future_date": future_date_in_context,
    "missing_dosage": missing_dosage_in_context,
    "contradictory_facts": contradictory_facts_in_context,
}
DETECTOR_VARIANTS = {"rules_only": RULES_ONLY, "rules_plus_context": DETECTORS}


def detect(
    c: sqlite3.Connection, kinds: Iterable[str] = KINDS, variant: str = "rules_plus_context"
) -> set[Detection]:
    """Every violation of the given kinds in the store, by the named detector variant."""
    rules = DETECTOR_VARIANTS[variant]
    return {(k, ident) for k in kinds for ident in rules[k](c)}
