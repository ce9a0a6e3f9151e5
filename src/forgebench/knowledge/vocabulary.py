"""The candidate vocabulary for bridge finding, built from the local corpora only.

Why this shape: a bridge finder can only propose what is in its candidate list, so the list
must come from data the finder could have seen without the answers. Words and two-word
phrases are counted in the prepared evaluation corpora (their text columns), stop words
dropped, and the most frequent kept; the test items are never read here. What the list
misses of the targets, and the chance accuracy it implies, are reported beside the scores.

Matching rule (fixed before any run, used for every metric): a phrase is normalised by
lower-casing, turning every run of characters other than a-z and 0-9 into a space (so
"non-local" is "non local"), splitting on spaces and reducing each word with
:func:`stem` (plural endings only). A candidate matches a target exactly when the two
normalised word sequences are equal: "shared resources" matches "shared resource", but
"resources" alone does not match "shared resources", and a two-word candidate cannot match
a three-word connection.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from forgebench.errors import ForgebenchError

_SPLIT_RE = re.compile(r"[^a-z0-9]+")
_WORD_RE = re.compile(r"^[a-z]{3,}$")

#: Where each corpus's text lives: (split, text columns); list columns are flattened.
CORPUS_TEXT: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "arc_easy": ("train", ("question", "choices")),
    "arc_challenge": ("train", ("question", "choices")),
    "boolq": ("validation", ("passage", "question")),
    "hellaswag": ("validation", ("ctx", "endings")),
    "piqa": ("validation", ("goal", "sol1", "sol2")),
    "gsm8k": ("train", ("question",)),
    "winogrande": ("validation", ("sentence",)),
}

_STOP_TEXT = """
a about above after again against all also am an and any are as at be because been
before being below between both but by can could did do does doing down during each few
for from further had has have having he her here hers herself him himself his how i if
in into is it its itself just me more most my myself no nor not now of off on once only
or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until
up very was we were what when where which while who whom why will with would you your
yours yourself yourselves one two three may might must shall get got gets many much us
let like use used using make makes made said say says well way ever every another onto
upon via yet still even though although whether either neither within without along
among around across per into
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())


def stem(word: str) -> str:
    """Plural endings only (…ies and …ie → …y, …es after s/x/z/ch/sh, …s), so singular
    and plural forms match while distinct words stay distinct."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("ie"):  # cookie and cookies both become cooky
        return word[:-2] + "y"
    if len(word) > 4 and word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """Lower-cased words of ``text`` (runs of a-z0-9), unstemmed."""
    return [t for t in _SPLIT_RE.split(text.lower()) if t]


def normalise(phrase: str) -> tuple[str, ...]:
    """The matching key of a phrase: its stemmed words (see the module's matching rule)."""
    return tuple(stem(t) for t in tokens(phrase))


def matches(candidate: str, target: str) -> bool:
    """True when ``candidate`` and ``target`` have equal normalised word sequences."""
    return normalise(candidate) == normalise(target)


@dataclass
class Vocabulary:
    """Candidate phrases (most frequent surface form per key) with their corpus counts."""

    phrases: list[str]
    counts: list[int]
    sources: dict[str, int] = field(default_factory=dict)  # corpus -> documents read
    keys: list[tuple[str, ...]] = field(init=False)

    def __post_init__(self) -> None:
        self.keys = [normalise(p) for p in self.phrases]
        self._index = {k: i for i, k in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.phrases)

    def index_of(self, phrase: str) -> int | None:
        """Position of the candidate matching ``phrase``, or None when the list misses it."""
        return self._index.get(normalise(phrase))

    def contains(self, phrase: str) -> bool:
        return normalise(phrase) in self._index

    @property
    def n_unigrams(self) -> int:
        return sum(1 for k in self.keys if len(k) == 1)


def corpus_texts(
    datasets_dir: Path, corpora: Sequence[str], *, key: str
) -> Iterator[tuple[str, str]]:
    """(corpus, text) for every document of the configured corpora, in file order."""
    for name in corpora:
        if name not in CORPUS_TEXT:
            raise ForgebenchError(
                f"{key}.corpora: unknown corpus {name!r}; allowed: {sorted(CORPUS_TEXT)}"
            )
        split, columns = CORPUS_TEXT[name]
        path = Path(datasets_dir) / name / f"{split}.parquet"
        if not path.is_file():
            raise ForgebenchError(
                f"{key}.datasets_dir: {path} is missing; prepare dataset {name!r} first "
                "(forgebench.datasets) or drop it from corpora"
            )
        table = pq.read_table(path, columns=list(columns))
        cols = [table.column(c).to_pylist() for c in columns]
        for row in zip(*cols, strict=True):
            yield name, " ".join(_flatten(row))


def _flatten(values: Iterable[object]) -> Iterator[str]:
    for v in values:
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            yield from _flatten(v.values())
        elif isinstance(v, (list, tuple)):
            yield from _flatten(v)


def build_vocabulary(
    texts: Iterable[tuple[str, str]],
    *,
    max_unigrams: int,
    max_bigrams: int,
    min_count: int,
) -> Vocabulary:
    """The ``max_unigrams`` most frequent content words and ``max_bigrams`` most frequent
    adjacent content-word pairs seen at least ``min_count`` times (ties by first sight)."""
    uni: Counter[tuple[str, ...]] = Counter()
    bi: Counter[tuple[str, ...]] = Counter()
    surface: dict[tuple[str, ...], Counter[str]] = {}
    sources: Counter[str] = Counter()
    for corpus, text in texts:
        sources[corpus] += 1
        words = tokens(text)
        prev: str | None = None
        for w in words:
            if w in STOP_WORDS or not _WORD_RE.match(w):
                prev = None
                continue
            k = (stem(w),)
            uni[k] += 1
            surface.setdefault(k, Counter())[w] += 1
            if prev is not None:
                kb = (stem(prev), k[0])
                bi[kb] += 1
                surface.setdefault(kb, Counter())[f"{prev} {w}"] += 1
            prev = w
    chosen = [kv for kv in uni.most_common() if kv[1] >= min_count][:max_unigrams]
    chosen += [kv for kv in bi.most_common() if kv[1] >= min_count][:max_bigrams]
    phrases = [surface[k].most_common(1)[0][0] for k, _ in chosen]
    return Vocabulary(phrases, [c for _, c in chosen], dict(sources))


def chance_accuracy(n_candidates: int, k: int, reachable: bool) -> float:
    """Probability that a uniformly random ranking of ``n_candidates`` puts one given
    reachable target in its top ``k`` (0 when the list misses the target)."""
    if not reachable or n_candidates <= 0:
        return 0.0
    return min(k, n_candidates) / n_candidates
