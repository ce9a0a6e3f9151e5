"""A seeded generator of users with latent topic preferences, items with topics, and graded
relevance that follows from the latent preferences.

What the approaches may see (``Observed``): item texts (a topic tag and words drawn from
the item's topics), each user's history (items drawn with probability rising with latent
affinity) and stated preferences (topics drawn from the user's latent mixture, so they
are informative but incomplete). What only the scorer and the oracle see (``Latent``): the
topic mixtures and affinities.

Relevance: affinity ``a(u, i) = theta_u . phi_i``; among the items not in the user's
history, the top ``GRADE_SHARES[0]`` by affinity get grade 3, the next ``GRADE_SHARES[1]``
grade 2, the next ``GRADE_SHARES[2]`` grade 1, the rest 0. Binary relevance (MAP,
Recall@20) is grade >= 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOPICS: dict[str, tuple[str, ...]] = {
    "astronomy": ("planet", "telescope", "orbit", "galaxy", "comet", "star", "nebula", "moon"),
    "cooking": ("recipe", "oven", "flavour", "spice", "bake", "sauce", "knife", "dough"),
    "football": ("goal", "striker", "league", "pitch", "referee", "tackle", "keeper", "derby"),
    "gardening": ("soil", "compost", "seedling", "prune", "bloom", "mulch", "shrub", "bulb"),
    "finance": ("stock", "bond", "dividend", "market", "interest", "loan", "budget", "equity"),
    "music": ("melody", "chord", "guitar", "rhythm", "album", "concert", "tempo", "lyric"),
    "history": ("empire", "treaty", "dynasty", "revolution", "medieval", "archive", "war", "king"),
    "medicine": ("vaccine", "diagnosis", "surgery", "symptom", "dose", "clinic", "nurse", "virus"),
    "travel": ("flight", "hotel", "passport", "beach", "museum", "itinerary", "luggage", "map"),
    "programming": ("compiler", "function", "bug", "python", "database", "server", "loop", "api"),
    "fitness": ("workout", "muscle", "cardio", "stretch", "squat", "protein", "running", "gym"),
    "film": ("director", "actor", "scene", "cinema", "script", "camera", "premiere", "sequel"),
    "chemistry": ("molecule", "reaction", "acid", "catalyst", "bond", "solvent", "atom", "ion"),
    "fashion": ("fabric", "runway", "designer", "denim", "collar", "stitch", "trend", "silk"),
    "wildlife": ("predator", "habitat", "migration", "nest", "species", "forest", "owl", "wolf"),
    "architecture": ("facade", "arch", "column", "blueprint", "concrete", "tower", "roof", "vault"),
}
TOPIC_NAMES = tuple(TOPICS)
GRADE_SHARES = (0.01, 0.02, 0.04)
WORDS_PER_ITEM = 6


@dataclass
class Latent:
    theta: np.ndarray  # (users, topics) preference mixtures
    phi: np.ndarray  # (items, topics) item mixtures
    affinity: np.ndarray  # (users, items)
    grades: np.ndarray  # (users, items) int 0..3; history items are 0


@dataclass
class Observed:
    item_texts: list[str]
    item_tags: np.ndarray  # (items,) main topic index, shown as the text's first word
    histories: list[np.ndarray]  # per user, item indices, in interaction order
    stated: list[list[str]]  # per user, stated topic names


def generate(
    n_users: int,
    n_items: int,
    *,
    history_len: int,
    stated_topics: int,
    rng: np.random.Generator,
    user_concentration: float = 0.3,
    history_temperature: float = 0.05,
) -> tuple[Observed, Latent]:
    """Users, items, histories and graded relevance (see the module docstring)."""
    n_topics = len(TOPICS)
    tags = rng.integers(0, n_topics, size=n_items)
    phi = 0.3 * rng.dirichlet(np.full(n_topics, 0.3), size=n_items)
    phi[np.arange(n_items), tags] += 0.7
    texts = []
    for i in range(n_items):
        topics = rng.choice(n_topics, size=WORDS_PER_ITEM, p=phi[i])
        words = [str(rng.choice(TOPICS[TOPIC_NAMES[t]])) for t in topics]
        texts.append(f"{TOPIC_NAMES[tags[i]]}: " + " ".join(words))
    theta = rng.dirichlet(np.full(n_topics, user_concentration), size=n_users)
    affinity = theta @ phi.T
    histories, stated = [], []
    grades = np.zeros((n_users, n_items), dtype=np.int64)
    for u in range(n_users):
        logits = affinity[u] / history_temperature
        p = np.exp(logits - logits.max())
        hist = rng.choice(n_items, size=history_len, replace=False, p=p / p.sum())
        histories.append(hist)
        k = min(stated_topics, int(np.count_nonzero(theta[u] > 1e-12)))
        picked = rng.choice(n_topics, size=k, replace=False, p=theta[u])
        stated.append([TOPIC_NAMES[t] for t in picked])
        pool = np.setdiff1d(np.arange(n_items), hist)
        order = pool[np.argsort(-affinity[u, pool], kind="stable")]
        edges = np.cumsum([max(1, round(s * len(pool))) for s in GRADE_SHARES])
        grades[u, order[: edges[0]]] = 3
        grades[u, order[edges[0] : edges[1]]] = 2
        grades[u, order[edges[1] : edges[2]]] = 1
    return Observed(texts, tags, histories, stated), Latent(theta, phi, affinity, grades)
