"""The original system's 15 Remote Association Test items and 12 cross-domain pairs.

These are the 27 test items of knowledge/creativity; nothing is tuned on them (the Guardian
threshold is calibrated on generated pairs that exclude every word they contain).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RatItem:
    """Three cue words and the one word that links them."""

    cues: tuple[str, str, str]
    target: str
    difficulty: str  # easy, medium, hard (the original's grouping)


@dataclass(frozen=True)
class CrossDomainPair:
    """A source concept, a target concept and the connections expected between them."""

    source: str
    target: str
    connections: tuple[str, ...]


def _rat(cues: str, target: str, difficulty: str) -> RatItem:
    a, b, c = cues.split("/")
    return RatItem((a, b, c), target, difficulty)


RAT_ITEMS: tuple[RatItem, ...] = (
    _rat("cottage/swiss/cake", "cheese", "easy"),
    _rat("dream/break/light", "day", "easy"),
    _rat("fish/mine/rush", "gold", "easy"),
    _rat("base/snow/dance", "ball", "easy"),
    _rat("mouse/sharp/blue", "cheese", "easy"),
    _rat("nuclear/feud/album", "family", "medium"),
    _rat("measure/worm/video", "tape", "medium"),
    _rat("flower/friend/scout", "girl", "medium"),
    _rat("painting/bowl/nail", "finger", "medium"),
    _rat("river/note/account", "bank", "medium"),
    _rat("phoenix/york/lawyer", "new", "hard"),
    _rat("magic/chocolate/fortune", "cookie", "hard"),
    _rat("sleeping/bean/trash", "bag", "hard"),
    _rat("cross/rain/tie", "bow", "hard"),
    _rat("widget/days/person", "sales", "hard"),
)

CROSS_DOMAIN_PAIRS: tuple[CrossDomainPair, ...] = (
    CrossDomainPair(
        "ecosystem", "market", ("balance", "diversity", "stability", "competition", "adaptation")
    ),
    CrossDomainPair(
        "cell division",
        "stock split",
        ("growth", "multiplication", "distribution", "value preservation"),
    ),
    CrossDomainPair(
        "symbiosis",
        "partnership",
        ("mutual benefit", "cooperation", "interdependence", "shared resources"),
    ),
    CrossDomainPair(
        "natural selection",
        "market selection",
        ("survival", "efficiency", "competitive advantage", "elimination"),
    ),
    CrossDomainPair(
        "immune system",
        "risk management",
        ("protection", "detection", "response", "memory", "adaptation"),
    ),
    CrossDomainPair(
        "thermodynamics",
        "crop rotation",
        ("energy conservation", "efficiency", "equilibrium", "cycle"),
    ),
    CrossDomainPair(
        "wave propagation",
        "pest spread",
        ("transmission", "amplitude", "frequency", "interference", "damping"),
    ),
    CrossDomainPair(
        "quantum entanglement",
        "plant communication",
        ("non-local connection", "instant response", "correlation", "information transfer"),
    ),
    CrossDomainPair(
        "phase transitions",
        "seasonal changes",
        ("critical points", "state change", "temperature dependence", "reversibility"),
    ),
    CrossDomainPair(
        "resonance",
        "companion planting",
        ("amplification", "frequency matching", "constructive interference", "optimization"),
    ),
    CrossDomainPair(
        "neural networks",
        "supply chains",
        ("connectivity", "information flow", "bottlenecks", "optimization", "learning"),
    ),
    CrossDomainPair(
        "protein folding",
        "organizational structure",
        ("configuration", "stability", "function", "misfolding", "chaperones"),
    ),
)


def item_words() -> set[str]:
    """Every word of the 27 test items (cues, targets, endpoints, connections), normalised;
    the Guardian's calibration pairs exclude all of them."""
    from forgebench.knowledge.vocabulary import normalise

    words: set[str] = set()
    for item in RAT_ITEMS:
        for w in (*item.cues, item.target):
            words.update(normalise(w))
    for pair in CROSS_DOMAIN_PAIRS:
        for w in (pair.source, pair.target, *pair.connections):
            words.update(normalise(w))
    return words
