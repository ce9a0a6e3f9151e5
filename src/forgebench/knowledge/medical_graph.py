"""The original's medical graph at scale, in SQLite, with its truth kept by the generator.

Why SQLite: a real store the detector can only query (stdlib ``sqlite3``, no server), with
indexes like a production schema. Entities: patients, drugs (each may contain one
allergen), allergens, conditions; edges: diagnosed-with (status confirmed / resolved /
ruled out), prescribed (date and dosage), allergic-to, and condition links (a condition
depends on a broader one; must be acyclic).

Why this shape: the detector (forgebench.knowledge.detector) shares no code, constant or
threshold with this module. The truth is what the generator *meant* (a date as a date, a
person as a person), never a rule over the stored text, so a detector can be wrong both
ways:

* Background noise in the clean graph (``generate``), as a real store has it: dates stored
  as free text in several formats (``TEXT_DATE_SHARE``, one of them with ordinal days),
  prescriptions in the last weeks before the as-of date (near misses drawn from a
  distribution), names stored "Last, First", statuses spelled in several ways, dosages in
  several forms (and "as directed"), and a few prescriptions whose dosage is missing
  (real violations, variant ``background``).
* ``inject`` adds the seven violation kinds, each in several variants, and look-alikes
  that break no rule, with values drawn from distributions (a date a geometric number of
  days before the as-of date can fall on it; a namesake's birth date a geometric number
  of days from the other's), never placed on a detector's boundary.

Ambiguous kinds (the truth is a choice the generator makes, documented here):
``missing_dosage/instruction`` ("as directed" counts as a dosage given); the look-alike
``duplicate_identity/one_letter_apart`` (twins: same birth date, names one letter apart,
different people; no rule can tell them from a typo without more data); dates written
``mm/dd/yyyy`` (this store's convention; read day-first they are other dates).

``generate`` and ``inject`` return the truth (``Injected``), which only the scorer reads.
"""

from __future__ import annotations

import itertools
import sqlite3
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

AS_OF = date(2026, 1, 1)

KINDS = (
    "allergy_conflict",
    "duplicate_identity",
    "future_date",
    "missing_dosage",
    "orphaned_edge",
    "contradictory_facts",
    "circular_dependency",
)
VARIANTS: dict[str, tuple[str, ...]] = {
    "allergy_conflict": ("recent", "old"),
    "duplicate_identity": ("case", "whitespace", "punctuation", "last_first", "typo"),
    "future_date": ("just_past", "far_past", "free_text"),
    "missing_dosage": ("null", "empty", "blank", "placeholder"),
    "orphaned_edge": ("missing_patient", "missing_drug", "missing_condition"),
    "contradictory_facts": (
        "confirmed_and_ruled_out",
        "prescribed_before_birth",
        "prescribed_before_birth_text",
    ),
    "circular_dependency": ("length_2", "length_3", "length_4", "length_5", "length_6"),
}

# Background noise of the clean graph (the generator's own choices).
TEXT_DATE_SHARE = 0.03
RECENT_SHARE = 0.05  # prescriptions within RECENT_DAYS of the as-of date
RECENT_DAYS = 60
LAST_FIRST_SHARE = 0.05
BACKGROUND_MISSING_DOSAGE = 0.003
INSTRUCTION_SHARE = 0.02
_MONTHS_TEXT = """
January February March April May June July August September October November December
"""
MONTHS = _MONTHS_TEXT.split()
#: Free-text date styles; "ordinal" is "3rd March 2019".
DATE_STYLES = ("day_month", "month_day", "dotted", "us_slash", "ordinal")
DOSAGE_FORMS = ("{} mg", "{}mg", "{} MG", "2 x {} mg")
PLACEHOLDERS = ("n/a", "N/A", "-", "?", "unknown", "TBD", "none")
RULED_OUT = ("ruled_out", "ruled out", "Ruled Out", "RULED_OUT", "ruled-out")
CONFIRMED = ("confirmed", "Confirmed", "CONFIRMED")
RESOLVED = ("resolved", "Resolved")

_FIRST_TEXT = """
Anna John Maria James Li Wei Fatima Omar Sofia Lucas Emma Noah Olivia Liam Ava Mateo Mia
Ethan Zoe Arjun Priya Hana Kenji Amara Kofi Ines Pavel Olga Yusuf Leila Marco Chloe
Diego Sara Tomas Nina Ivan Elena Hugo Alice
"""
FIRST = _FIRST_TEXT.split()
_LAST_TEXT = """
Smith Garcia Chen Okafor Muller Rossi Silva Kim Novak Haddad Jensen Dubois Tanaka Singh
Kowalski Nguyen Brown Lopez Ivanova Mensah Costa Larsen Moreau Sato Patel Schmidt
Ferrari Santos Park Horvat Cohen Berg Petit Suzuki Khan Weber Romano Alves Lee Hansen
"""
LAST = _LAST_TEXT.split()

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE patient (id INTEGER PRIMARY KEY, name TEXT NOT NULL, birth_date TEXT NOT NULL);
CREATE TABLE allergen (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE drug (id INTEGER PRIMARY KEY, name TEXT NOT NULL, allergen_id INTEGER);
CREATE TABLE condition (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE condition_link (id INTEGER PRIMARY KEY, child_id INTEGER NOT NULL,
                             parent_id INTEGER NOT NULL);
CREATE TABLE diagnosed_with (id INTEGER PRIMARY KEY, patient_id INTEGER NOT NULL,
                             condition_id INTEGER NOT NULL, status TEXT NOT NULL);
CREATE TABLE prescribed (id INTEGER PRIMARY KEY, patient_id INTEGER NOT NULL,
                         drug_id INTEGER NOT NULL, date TEXT NOT NULL, dosage TEXT);
CREATE TABLE allergic_to (id INTEGER PRIMARY KEY, patient_id INTEGER NOT NULL,
                          allergen_id INTEGER NOT NULL);
CREATE TABLE quarantine (id INTEGER PRIMARY KEY, source TEXT NOT NULL, row_id INTEGER NOT NULL,
                         reason TEXT NOT NULL);
CREATE INDEX ix_rx_patient ON prescribed(patient_id);
CREATE INDEX ix_rx_drug ON prescribed(drug_id);
CREATE INDEX ix_dx_patient ON diagnosed_with(patient_id, condition_id);
CREATE INDEX ix_al_patient ON allergic_to(patient_id);
CREATE INDEX ix_link_child ON condition_link(child_id);
"""


@dataclass
class Injected:
    """Ground truth: (kind, identity) -> variant, for violations and for look-alikes."""

    violations: dict[tuple[str, tuple], str] = field(default_factory=dict)
    lookalikes: dict[tuple[str, tuple], str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sizes:
    patients: int
    drugs: int = 200
    allergens: int = 30
    conditions: int = 300


def _day(d: date) -> str:
    return d.isoformat()


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def write_date(d: date, style: str) -> str:
    """``d`` as this store's clerks write it in ``style`` (``iso`` or a DATE_STYLES)."""
    if style == "iso":
        return d.isoformat()
    month = MONTHS[d.month - 1]
    if style == "day_month":
        return f"{d.day} {month} {d.year}"
    if style == "month_day":
        return f"{month} {d.day}, {d.year}"
    if style == "dotted":
        return f"{d.day:02d}.{d.month:02d}.{d.year}"
    if style == "us_slash":
        return f"{d.month:02d}/{d.day:02d}/{d.year}"
    if style == "ordinal":
        return f"{_ordinal(d.day)} {month} {d.year}"
    raise ValueError(f"unknown date style {style!r}")


def _style(rng: np.random.Generator, text_share: float) -> str:
    if rng.random() >= text_share:
        return "iso"
    return DATE_STYLES[int(rng.integers(len(DATE_STYLES)))]


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _dosage(rng: np.random.Generator) -> str:
    if rng.random() < INSTRUCTION_SHARE:
        return "as directed"
    amount = int(rng.integers(1, 100)) * 5
    return DOSAGE_FORMS[int(rng.integers(len(DOSAGE_FORMS)))].format(amount)


def create_store(path: str = ":memory:") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(SCHEMA)
    conn.execute("INSERT INTO meta VALUES ('as_of', ?)", (_day(AS_OF),))
    return conn


def generate(conn: sqlite3.Connection, sizes: Sizes, rng: np.random.Generator) -> Injected:
    """Fill an empty store with a graph that has background noise (module docstring) and
    return its truth: the background violations (variant ``background``)."""
    truth = Injected()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO allergen VALUES (?, ?)", [(i, f"allergen-{i}") for i in range(sizes.allergens)]
    )
    drug_allergen = np.where(
        rng.random(sizes.drugs) < 0.4, rng.integers(0, sizes.allergens, sizes.drugs), -1
    )
    conn.executemany(
        "INSERT INTO drug VALUES (?, ?, ?)",
        [(i, f"drug-{i}", None if a < 0 else int(a)) for i, a in enumerate(drug_allergen)],
    )
    conn.executemany(
        "INSERT INTO condition VALUES (?, ?)",
        [(i, f"condition-{i}") for i in range(sizes.conditions)],
    )
    links = []
    for c in range(1, sizes.conditions):
        for p in {int(x) for x in rng.integers(0, c, size=int(rng.integers(0, 3)))}:
            links.append((c, p))  # child -> lower-id parent: acyclic by construction
    conn.executemany("INSERT INTO condition_link (child_id, parent_id) VALUES (?, ?)", links)
    seen: set[tuple[str, str]] = set()
    patients, rx, dx, al = [], [], [], []
    rx_id = 0
    for pid in range(sizes.patients):
        while True:
            first, last = FIRST[rng.integers(len(FIRST))], LAST[rng.integers(len(LAST))]
            born = AS_OF - timedelta(days=int(rng.integers(365 * 2, 365 * 90)))
            key = (person_key(f"{first} {last}"), _day(born))
            if key not in seen:
                seen.add(key)
                break
        name = f"{last}, {first}" if rng.random() < LAST_FIRST_SHARE else f"{first} {last}"
        patients.append((pid, name, _day(born)))
        allergies = {int(a) for a in rng.integers(0, sizes.allergens, size=int(rng.integers(0, 3)))}
        al += [(pid, a) for a in sorted(allergies)]
        safe = np.flatnonzero(~np.isin(drug_allergen, sorted(allergies)))
        for d in rng.choice(safe, size=int(rng.integers(0, 5)), replace=False):
            if rng.random() < RECENT_SHARE:
                when = AS_OF - timedelta(days=int(rng.integers(0, RECENT_DAYS)))
                when = max(when, born)
            else:
                when = born + timedelta(days=int(rng.integers(0, (AS_OF - born).days + 1)))
            dosage: str | None = _dosage(rng)
            rx_id += 1
            if rng.random() < BACKGROUND_MISSING_DOSAGE:
                dosage = None
                truth.violations[("missing_dosage", (rx_id,))] = "background"
            rx.append((rx_id, pid, int(d), write_date(when, _style(rng, TEXT_DATE_SHARE)), dosage))
        for c in rng.choice(sizes.conditions, size=int(rng.integers(0, 4)), replace=False):
            status = CONFIRMED if rng.random() < 0.7 else RESOLVED
            dx.append((pid, int(c), _pick(rng, status)))
    conn.executemany("INSERT INTO patient VALUES (?, ?, ?)", patients)
    conn.executemany("INSERT INTO prescribed VALUES (?, ?, ?, ?, ?)", rx)
    conn.executemany(
        "INSERT INTO diagnosed_with (patient_id, condition_id, status) VALUES (?, ?, ?)", dx
    )
    conn.executemany("INSERT INTO allergic_to (patient_id, allergen_id) VALUES (?, ?)", al)
    conn.execute("COMMIT")
    return truth


def person_key(name: str) -> str:
    """The generator's own identity key (tokens case-folded, punctuation dropped, sorted):
    it keeps two generated people from sharing a name and birth date by accident."""
    kept = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in name.casefold())
    return " ".join(sorted(kept.split()))


class _Injector:
    def __init__(self, conn: sqlite3.Connection, rng: np.random.Generator) -> None:
        self.c = conn
        self.rng = rng
        self.truth = Injected()
        self.n_patients = conn.execute("SELECT max(id) + 1 FROM patient").fetchone()[0]
        self.n_drugs = conn.execute("SELECT max(id) + 1 FROM drug").fetchone()[0]
        self.n_conditions = conn.execute("SELECT max(id) + 1 FROM condition").fetchone()[0]
        self.next_patient = self.n_patients
        self.next_condition = self.n_conditions
        self.used: set[int] = set()  # patients already touched, so injections never overlap
        # Identity keys in the store: a new patient may share one only when it is an
        # injected duplicate, so no look-alike turns into an unrecorded real duplicate.
        self.keys = {
            (person_key(n), b) for n, b in conn.execute("SELECT name, birth_date FROM patient")
        }

    def patient(self) -> tuple[int, str, date]:
        while True:
            pid = int(self.rng.integers(self.n_patients))
            if pid not in self.used:
                self.used.add(pid)
                name, born = self.c.execute(
                    "SELECT name, birth_date FROM patient WHERE id = ?", (pid,)
                ).fetchone()
                return pid, name, date.fromisoformat(born)

    def rx(
        self, pid: int, drug: int, when: date, dosage: str | None = "10 mg", style: str = "iso"
    ) -> int:
        cur = self.c.execute(
            "INSERT INTO prescribed (patient_id, drug_id, date, dosage) VALUES (?, ?, ?, ?)",
            (pid, drug, write_date(when, style), dosage),
        )
        return int(cur.lastrowid)

    def text_style(self) -> str:
        return _pick(self.rng, DATE_STYLES)

    def profile(self, pid: int) -> None:
        """Allergies and one prescription drawn like the clean graph's, for a new person."""
        n_allergens = self.c.execute("SELECT count(*) FROM allergen").fetchone()[0]
        for a in {int(x) for x in self.rng.integers(0, n_allergens, int(self.rng.integers(0, 3)))}:
            self.c.execute(
                "INSERT INTO allergic_to (patient_id, allergen_id) VALUES (?, ?)", (pid, a)
            )
        born = self.c.execute("SELECT birth_date FROM patient WHERE id = ?", (pid,)).fetchone()[0]
        self.rx(pid, self.safe_drug(pid), self.when(date.fromisoformat(born)))

    def safe_drug(self, pid: int) -> int:
        rows = self.c.execute(
            "SELECT id FROM drug WHERE allergen_id IS NULL OR allergen_id NOT IN "
            "(SELECT allergen_id FROM allergic_to WHERE patient_id = ?)",
            (pid,),
        ).fetchall()
        return int(rows[int(self.rng.integers(len(rows)))][0])

    def new_patient(self, name: str, born: date, *, duplicate: bool = False) -> int | None:
        """Insert a patient; None (nothing inserted) when its identity key is taken and it
        is not meant as a duplicate."""
        key = (person_key(name), _day(born))
        if key in self.keys and not duplicate:
            return None
        self.keys.add(key)
        pid = self.next_patient
        self.next_patient += 1
        self.c.execute("INSERT INTO patient VALUES (?, ?, ?)", (pid, name, _day(born)))
        return pid

    def mark(self, kind: str, ident: tuple, variant: str, *, violation: bool = True) -> None:
        (self.truth.violations if violation else self.truth.lookalikes)[(kind, ident)] = variant

    def when(self, born: date, variant: str = "old") -> date:
        if variant == "recent":
            return AS_OF - timedelta(days=int(self.rng.integers(0, 30)))
        span = max(1, (AS_OF - born).days - 30)
        return born + timedelta(days=int(self.rng.integers(0, span)))

    def _fresh_allergen_drug(self, pid: int) -> tuple[int, int]:
        """A drug with an allergen that none of the patient's prescriptions contains."""
        rows = self.c.execute(
            "SELECT id, allergen_id FROM drug WHERE allergen_id IS NOT NULL AND allergen_id NOT IN "
            "(SELECT d.allergen_id FROM prescribed p JOIN drug d ON d.id = p.drug_id "
            "WHERE p.patient_id = ? AND d.allergen_id IS NOT NULL) ORDER BY id",
            (pid,),
        ).fetchall()
        drug, allergen = rows[int(self.rng.integers(len(rows)))]
        return int(drug), int(allergen)

    # --- the seven kinds: violation(variant), then look-alike(variant)
    def allergy_conflict(self, variant: str) -> None:
        pid, _, born = self.patient()
        drug, allergen = self._fresh_allergen_drug(pid)
        self.c.execute(
            "INSERT INTO allergic_to (patient_id, allergen_id) VALUES (?, ?)", (pid, allergen)
        )
        self.mark("allergy_conflict", (self.rx(pid, drug, self.when(born, variant)),), variant)

    def allergy_lookalike(self, variant: str) -> None:
        # Allergic to one allergen, prescribed a drug with a different one.
        pid, _, born = self.patient()
        drug, allergen = self._fresh_allergen_drug(pid)
        other = self.c.execute(
            "SELECT id FROM allergen WHERE id != ? AND id NOT IN (SELECT allergen_id FROM drug "
            "WHERE id IN (SELECT drug_id FROM prescribed WHERE patient_id = ?) AND allergen_id "
            "IS NOT NULL) LIMIT 1",
            (allergen, pid),
        ).fetchone()[0]
        self.c.execute(
            "INSERT INTO allergic_to (patient_id, allergen_id) VALUES (?, ?)", (pid, other)
        )
        self.c.execute(
            "DELETE FROM allergic_to WHERE patient_id = ? AND allergen_id = ?", (pid, allergen)
        )
        ident = (self.rx(pid, drug, self.when(born, variant)),)
        self.mark("allergy_conflict", ident, "other_allergen", violation=False)

    def duplicate_identity(self, variant: str) -> None:
        """The same person registered again: a variant spelling of the name, the same
        birth date, most of the time the same allergies (reported again), one
        prescription of a drug the first record also has or of another safe one."""
        pid, name, born = self.patient()
        last, first = name.split(", ") if ", " in name else name.split(" ")[::-1]
        flip = self.rng.random() < 0.5
        if variant == "typo":
            i = int(self.rng.integers(1, len(last)))
            letter = "aeioulnrst"[int(self.rng.integers(10))]
            if letter == last[i]:
                letter = "x"
            typo = last[:i] + letter + last[i + 1 :]
        if variant == "case":
            twin = name.upper() if flip else name.lower()
        elif variant == "whitespace":
            twin = f" {name.replace(' ', '  ')} " if flip else name.replace(" ", "\t")
        elif variant == "punctuation":
            twin = f"{name}." if flip else name.replace(", ", " ").replace(" ", ". ", 1)
        elif variant == "last_first":  # the other word order
            twin = f"{last}, {first}" if ", " not in name else f"{first} {last}"
        else:
            twin = name.replace(last, typo)
        dup = self.new_patient(twin, born, duplicate=True)
        if self.rng.random() < 0.8:
            self.c.execute(
                "INSERT INTO allergic_to (patient_id, allergen_id) "
                "SELECT ?, allergen_id FROM allergic_to WHERE patient_id = ?",
                (dup, pid),
            )
        had = self.c.execute(
            "SELECT drug_id FROM prescribed WHERE patient_id = ? ORDER BY id", (pid,)
        ).fetchall()
        drug = int(had[0][0]) if had and self.rng.random() < 0.5 else self.safe_drug(pid)
        self.rx(dup, drug, self.when(born))
        self.mark("duplicate_identity", (min(pid, dup), max(pid, dup)), variant)

    def duplicate_lookalike(self, variant: str) -> None:
        pid, name, born = self.patient()
        other = None
        while other is None:
            if variant == "namesake":  # same name, birth a geometric draw apart: two people
                shift = timedelta(days=int(self.rng.geometric(1 / 180)))
                other = self.new_patient(name, born - shift)
            else:  # twins: one letter apart, same birth date (ambiguous, see above)
                letter = "xyzq"[int(self.rng.integers(4))]
                other = self.new_patient(name[:-1] + letter, born)
        self.profile(other)
        self.mark(
            "duplicate_identity", (min(pid, other), max(pid, other)), variant, violation=False
        )

    def future_date(self, variant: str) -> None:
        pid, _, _ = self.patient()
        style = "iso"
        if variant == "just_past":  # a geometric number of days past: mostly 1 to 5
            days = int(self.rng.geometric(0.3))
        elif variant == "far_past":
            days = int(self.rng.integers(365, 365 * 20))
        else:
            days, style = int(self.rng.integers(1, 400)), self.text_style()
        when = AS_OF + timedelta(days=days)
        rid = self.rx(pid, self.safe_drug(pid), when, style=style)
        self.mark("future_date", (rid,), variant)

    def future_lookalike(self, variant: str) -> None:
        pid, _, born = self.patient()
        if variant == "near_as_of":  # 0, 1, 2, ... days before, geometric: may fall on it
            when, style = AS_OF - timedelta(days=int(self.rng.geometric(0.15)) - 1), "iso"
        else:  # a past date written as free text
            when, style = self.when(born), self.text_style()
        rid = self.rx(pid, self.safe_drug(pid), when, style=style)
        self.mark("future_date", (rid,), variant, violation=False)

    def missing_dosage(self, variant: str) -> None:
        pid, _, born = self.patient()
        dosage = {"null": None, "empty": "", "blank": "   "}.get(variant)
        if variant == "placeholder":
            dosage = _pick(self.rng, PLACEHOLDERS)
        self.mark(
            "missing_dosage", (self.rx(pid, self.safe_drug(pid), self.when(born), dosage),), variant
        )

    def dosage_lookalike(self, variant: str) -> None:
        pid, _, born = self.patient()
        dosage = {"small_unit": "0.5 mL", "unit_count": "1 tablet"}.get(variant, "as directed")
        rid = self.rx(pid, self.safe_drug(pid), self.when(born), dosage)
        self.mark("missing_dosage", (rid,), variant, violation=False)

    def orphaned_edge(self, variant: str) -> None:
        pid, _, born = self.patient()
        if variant == "missing_patient":
            ghost = self.n_patients + 10_000_000 + int(self.rng.integers(1_000_000))
            rid = self.rx(ghost, self.safe_drug(pid), self.when(born))
            self.mark("orphaned_edge", ("prescribed", rid), variant)
        elif variant == "missing_drug":
            rid = self.rx(
                pid, self.n_drugs + 1_000 + int(self.rng.integers(1_000_000)), self.when(born)
            )
            self.mark("orphaned_edge", ("prescribed", rid), variant)
        else:
            cur = self.c.execute(
                "INSERT INTO diagnosed_with (patient_id, condition_id, status) VALUES (?, ?, ?)",
                (
                    pid,
                    self.n_conditions + 1_000_000 + int(self.rng.integers(1_000_000)),
                    "confirmed",
                ),
            )
            self.mark("orphaned_edge", ("diagnosed_with", int(cur.lastrowid)), variant)

    def orphan_lookalike(self, variant: str) -> None:
        if variant == "isolated_patient":  # a node without edges is not an orphaned edge
            pid = self.new_patient(
                f"Isolated Person{self.next_patient}", AS_OF - timedelta(days=9000)
            )
            self.mark("orphaned_edge", ("patient", pid), variant, violation=False)
        else:  # an edge to the newest, highest-id patient
            pid = self.new_patient(
                f"Newest Person{self.next_patient}", AS_OF - timedelta(days=8000)
            )
            rid = self.rx(pid, self.safe_drug(pid), AS_OF - timedelta(days=5))
            self.mark("orphaned_edge", ("prescribed", rid), variant, violation=False)

    def contradictory_facts(self, variant: str) -> None:
        pid, _, born = self.patient()
        if variant == "confirmed_and_ruled_out":
            cond = int(self.rng.integers(self.n_conditions))
            self.c.execute(
                "DELETE FROM diagnosed_with WHERE patient_id = ? AND condition_id = ?", (pid, cond)
            )
            rows = [
                (pid, cond, _pick(self.rng, CONFIRMED)),
                (pid, cond, _pick(self.rng, RULED_OUT)),
            ]
            self.c.executemany(
                "INSERT INTO diagnosed_with (patient_id, condition_id, status) VALUES (?, ?, ?)",
                rows[:: 1 if self.rng.random() < 0.5 else -1],
            )
            self.mark("contradictory_facts", ("diagnosis", pid, cond), variant)
        else:
            when = born - timedelta(days=int(self.rng.integers(1, 3000)))
            style = "iso" if variant == "prescribed_before_birth" else self.text_style()
            rid = self.rx(pid, self.safe_drug(pid), when, style=style)
            self.mark("contradictory_facts", ("prescription", rid), variant)

    def contradiction_lookalike(self, variant: str) -> None:
        pid, _, born = self.patient()
        if variant == "confirmed_and_resolved":
            cond = int(self.rng.integers(self.n_conditions))
            self.c.execute(
                "DELETE FROM diagnosed_with WHERE patient_id = ? AND condition_id = ?", (pid, cond)
            )
            self.c.executemany(
                "INSERT INTO diagnosed_with (patient_id, condition_id, status) VALUES (?, ?, ?)",
                [(pid, cond, _pick(self.rng, CONFIRMED)), (pid, cond, _pick(self.rng, RESOLVED))],
            )
            self.mark("contradictory_facts", ("diagnosis", pid, cond), variant, violation=False)
        else:  # on or a geometric number of days after the birth date
            when = born + timedelta(days=int(self.rng.geometric(0.1)) - 1)
            rid = self.rx(pid, self.safe_drug(pid), when)
            self.mark("contradictory_facts", ("prescription", rid), variant, violation=False)

    def _new_conditions(self, n: int) -> list[int]:
        ids = list(range(self.next_condition, self.next_condition + n))
        self.next_condition += n
        self.c.executemany(
            "INSERT INTO condition VALUES (?, ?)", [(i, f"condition-{i}") for i in ids]
        )
        anchor = int(self.rng.integers(self.n_conditions))
        self.c.execute(
            "INSERT INTO condition_link (child_id, parent_id) VALUES (?, ?)", (ids[0], anchor)
        )
        return ids

    def _link(self, child: int, parent: int) -> None:
        self.c.execute(
            "INSERT INTO condition_link (child_id, parent_id) VALUES (?, ?)", (child, parent)
        )

    def circular_dependency(self, variant: str) -> None:
        ids = self._new_conditions(int(variant.rsplit("_", 1)[1]))
        for a, b in zip(ids, ids[1:] + ids[:1], strict=True):
            self._link(a, b)
        self.mark("circular_dependency", tuple(sorted(ids)), variant)

    def cycle_lookalike(self, variant: str) -> None:
        if variant == "open_chain":  # a chain of six, not closed
            ids = self._new_conditions(6)
            for a, b in itertools.pairwise(ids):
                self._link(a, b)
        else:  # a diamond: two paths to one parent, no directed cycle
            ids = self._new_conditions(4)
            for a, b in ((ids[0], ids[1]), (ids[0], ids[2]), (ids[1], ids[3]), (ids[2], ids[3])):
                self._link(a, b)
        self.mark("circular_dependency", tuple(sorted(ids)), variant, violation=False)


LOOKALIKES: dict[str, tuple[str, tuple[str, ...]]] = {
    "allergy_conflict": ("allergy_lookalike", ("other_allergen",)),
    "duplicate_identity": ("duplicate_lookalike", ("namesake", "one_letter_apart")),
    "future_date": ("future_lookalike", ("near_as_of", "text_past")),
    "missing_dosage": ("dosage_lookalike", ("small_unit", "unit_count", "instruction")),
    "orphaned_edge": ("orphan_lookalike", ("isolated_patient", "newest_patient")),
    "contradictory_facts": (
        "contradiction_lookalike",
        ("confirmed_and_resolved", "prescribed_after_birth"),
    ),
    "circular_dependency": ("cycle_lookalike", ("open_chain", "diamond")),
}


def inject(
    conn: sqlite3.Connection,
    per_variant: int,
    lookalikes_per_variant: int,
    rng: np.random.Generator,
    truth: Injected | None = None,
) -> Injected:
    """Inject ``per_variant`` violations of every kind and variant, and
    ``lookalikes_per_variant`` look-alikes of every look-alike variant, in seeded order;
    the truth is added to ``truth`` (the background's, from ``generate``) when given."""
    inj = _Injector(conn, rng)
    if truth is not None:
        inj.truth = truth
    jobs = [(k, v, True) for k in KINDS for v in VARIANTS[k] for _ in range(per_variant)]
    jobs += [
        (k, v, False)
        for k in KINDS
        for v in LOOKALIKES[k][1]
        for _ in range(lookalikes_per_variant)
    ]
    conn.execute("BEGIN")
    for j in rng.permutation(len(jobs)):
        kind, variant, violation = jobs[j]
        getattr(inj, kind if violation else LOOKALIKES[kind][0])(variant)
    conn.execute("COMMIT")
    return inj.truth


def record_count(conn: sqlite3.Connection) -> int:
    """Rows in the graph's entity and edge tables (the size throughput is measured against)."""
    tables = (
        "patient",
        "drug",
        "allergen",
        "condition",
        "condition_link",
        "diagnosed_with",
        "prescribed",
        "allergic_to",
    )
    return sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)
