"""How many documents a multiple-choice task needs for its interval to clear chance.

The evaluation records a Clopper-Pearson interval of each accuracy
(``samples.document_interval``) and a model is above chance when the interval's lower
bound is above the task's chance level (``samples.chance_levels``: the higher of guessing
and always giving the most frequent answer, over the evaluated documents). With a model
whose full-set accuracy is ``p``, the count right out of ``n`` documents is Binomial(n, p),
so the probability that the interval clears chance is exact: ``P(X >= k_min)``, where
``k_min`` is the fewest right answers whose lower bound is above chance.
``documents_needed`` is the smallest ``n`` with that probability at least ``power``. The
documents at each size are fixed (below), so the power at the chosen size is exact for
them; the accuracy planned with is the lower confidence bound of the full-set accuracy, so
a full-set figure that is itself a little high does not undersize the subset.

The documents are the run seed's subset (``runner.select_docs``), fixed before any result
is seen, so the chance level of each candidate size is computed from the gold answers of
exactly those documents; only the sizes come from this calculation, never the seed.

    python -m forgebench.evaluation.subset_size --datasets-dir results/datasets \\
        --seed 20261126 fb_arc_easy=1300/2376 fb_piqa=1230/1838 fb_hellaswag=0.43
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from scipy import stats as sps


def clear_chance_power(n: int, accuracy: float, chance: float, confidence: float = 0.95) -> float:
    """Probability that n documents' Clopper-Pearson lower bound is above ``chance`` when
    the model's accuracy is ``accuracy`` (two-sided interval at ``confidence``)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tail = (1.0 - confidence) / 2.0
    if sps.beta.ppf(tail, n, 1) <= chance:  # not even n right out of n clears it
        return 0.0
    lo, hi = 0, n  # the lower bound rises with k: bisect for the fewest k above chance
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if sps.beta.ppf(tail, mid, n - mid + 1) > chance:
            hi = mid
        else:
            lo = mid
    return float(sps.binom.sf(hi - 1, n, accuracy))


def documents_needed(
    accuracy: float,
    chance: float | Callable[[int], float],
    *,
    confidence: float = 0.95,
    power: float = 0.8,
    max_n: int = 20000,
) -> int | None:
    """The smallest n whose power (``clear_chance_power``) is at least ``power``, up to
    ``max_n``; None when there is none (an accuracy at or near chance: no budget decides
    it). ``chance`` is a level, or the level of the n-document subset as a function of n."""
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"need accuracy in [0, 1], got {accuracy}")
    chance_at = chance if callable(chance) else (lambda n: float(chance))
    for n in range(1, max_n + 1):
        c = chance_at(n)
        if accuracy > c and clear_chance_power(n, accuracy, c, confidence) >= power:
            return n
    return None


def planning_accuracy(correct: int, n: int, confidence: float = 0.95) -> float:
    """The accuracy to plan with: the lower Clopper-Pearson bound of ``correct`` of ``n``
    full-set documents (``stats.proportion_ci``)."""
    from forgebench.stats import proportion_ci

    return proportion_ci(correct, n, confidence)[0]


def task_documents(task: str, datasets_dir: str | Path) -> pd.DataFrame:
    """Every document of an fb_* multiple-choice task as the runner sees it: ``subtask``,
    ``doc_id``, ``n_choices``, ``gold`` (lm-eval's task objects, nothing evaluated)."""
    from forgebench.evaluation.runner import gold_fn, n_choices_fn
    from forgebench.evaluation.tasks import task_manager

    leaves = task_manager(Path(datasets_dir)).load([task])["tasks"]
    gold, n_choices = gold_fn(leaves), n_choices_fn(leaves)
    rows = [
        {"subtask": name, "doc_id": i, "n_choices": n_choices(name, d), "gold": gold(name, d)}
        for name, t in leaves.items()
        for i, d in enumerate(t.eval_docs)
    ]
    return pd.DataFrame(rows)


def subset_chance(docs: pd.DataFrame, seed: int) -> Callable[[int], float]:
    """The chance level (``chance_acc``) of the seed's n-document subset, as a function of n."""
    from forgebench.evaluation.runner import select_docs
    from forgebench.evaluation.samples import chance_levels

    def chance_at(n: int) -> float:
        pick = select_docs(len(docs), n, seed)
        sel = docs if pick is None else docs.iloc[pick]
        return chance_levels(sel)["chance_acc"]

    return chance_at


def main(argv: Sequence[str] | None = None) -> int:
    """Print the documents each ``task=accuracy`` needs on the seed's subset."""
    p = argparse.ArgumentParser(prog="python -m forgebench.evaluation.subset_size")
    p.add_argument(
        "tasks",
        nargs="+",
        help="task=correct/n on the full set (planned at its lower bound), or task=accuracy",
    )
    p.add_argument("--datasets-dir", required=True, help="prepared datasets (results/datasets)")
    p.add_argument("--seed", type=int, required=True, help="the run seed (config seed)")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--power", type=float, default=0.8)
    args = p.parse_args(argv)
    print("task\tplanned accuracy\tdocuments\tchance (all)\tchance (subset)\tdocs needed")
    for item in args.tasks:
        task, _, given = item.partition("=")
        correct, _, total = given.partition("/")
        acc = (
            planning_accuracy(int(correct), int(total), args.confidence) if total else float(given)
        )
        docs = task_documents(task, args.datasets_dir)
        chance_at = subset_chance(docs, args.seed)
        n = documents_needed(
            acc, chance_at, confidence=args.confidence, power=args.power, max_n=len(docs)
        )
        at_n = f"{chance_at(n):.4f}" if n else "-"
        full = chance_at(len(docs))
        print(f"{task}\t{acc:.4f}\t{len(docs)}\t{full:.4f}\t{at_n}\t{n or 'beyond the set'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
