"""The Grokfast benchmark: the EMA filter, seeded training, censoring and its rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from forgebench.config import check_config
from forgebench.errors import ForgebenchError
from forgebench.training import grokfast as G
from forgebench.training import modular_data
from forgebench.training.transformer import Decoder
from forgebench.workflow import benchmark_config

REPO = Path(__file__).resolve().parents[1]

# Seconds of work: p = 11 (121 equations), a one-block model of width 16.
TINY = {
    "modulus": 11,
    "operation": "add",
    "train_fraction": 0.5,
    "dim": 16,
    "layers": 1,
    "heads": 2,
    "optimizer": "adam",
    "lr": 1e-3,
    "beta1": 0.9,
    "beta2": 0.98,
    "weight_decay": 0.005,
    "warmup_steps": 10,
    "batch_size": 32,
    "filter_alpha": 0.98,
    "filter_lambda": 2.0,
    "threshold": 0.95,
    "max_steps": 12,
    "eval_every": 4,
    "seeds": 2,
    "device": "cpu",
    "threads": 1,
}
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: tiny models gain nothing from more, and on a busy machine the
    threads' spin-waits cost seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _param_with_grads(values):
    p = nn.Parameter(torch.zeros(len(values[0])))
    grads = [torch.tensor(v, dtype=torch.float32) for v in values]
    return p, grads


def test_ema_filter_hand_computed():
    p, grads = _param_with_grads([[1.0, 2.0], [3.0, -1.0], [0.0, 4.0]])
    f = G.EmaGradFilter([p], alpha=0.5, lamb=2.0)
    out = []
    for g in grads:
        p.grad = g.clone()
        f.apply()
        out.append(p.grad.tolist())
    # step 1: ema = g1 = [1, 2]         -> g + 2 ema = [3, 6]
    # step 2: ema = [2, 0.5]            -> [3, -1] + [4, 1] = [7, 0]
    # step 3: ema = [1, 2.25]           -> [0, 4] + [2, 4.5] = [2, 8.5]
    assert out == [[3.0, 6.0], [7.0, 0.0], [2.0, 8.5]]


def test_ema_filter_matches_the_reference_recurrence():
    rng = np.random.default_rng(0)
    seq = rng.normal(size=(20, 5))
    p = nn.Parameter(torch.zeros(5, dtype=torch.float64))
    f = G.EmaGradFilter([p], alpha=0.98, lamb=2.0)
    ema = None
    for g in seq:
        ema = g.copy() if ema is None else ema * 0.98 + g * (1 - 0.98)
        p.grad = torch.tensor(g)
        f.apply()
        np.testing.assert_allclose(p.grad.numpy(), g + 2.0 * ema, rtol=1e-12)


def test_ema_filter_skips_parameters_without_gradients():
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    f = G.EmaGradFilter([a, b], alpha=0.9, lamb=1.0)
    a.grad = torch.tensor([1.0, 1.0])
    f.apply()
    assert a.grad.tolist() == [2.0, 2.0] and b.grad is None
    with pytest.raises(ValueError, match="alpha"):
        G.EmaGradFilter([a], alpha=1.0, lamb=1.0)


@pytest.mark.parametrize("operation", modular_data.OPERATIONS)
def test_equations_are_correct(operation):
    p = 7
    x, y = modular_data.equations(p, operation)
    a, op, b, eq = x.T
    assert (op == p + 1).all() and (eq == p).all()
    expected = {
        "add": (a + b) % p,
        "sub": (a - b) % p,
        "mul": (a * b) % p,
        "div": None,
    }[operation]
    if operation == "div":
        assert (b != 0).all()
        assert ((y * b) % p == a).all()
    else:
        assert (y == expected).all()
    assert x.shape[0] == (p * (p - 1) if operation == "div" else p * p)


def test_split_is_seeded_and_disjoint():
    s1 = modular_data.split(11, "add", 0.5, torch.Generator().manual_seed(3))
    s2 = modular_data.split(11, "add", 0.5, torch.Generator().manual_seed(3))
    s3 = modular_data.split(11, "add", 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(s1.train_x, s2.train_x) and not torch.equal(s1.train_x, s3.train_x)
    assert s1.train_x.shape[0] + s1.val_x.shape[0] == 121
    train = {tuple(r) for r in s1.train_x.tolist()}
    assert not train & {tuple(r) for r in s1.val_x.tolist()}


def test_decoder_last_position_shortcut_is_exact():
    torch.manual_seed(0)
    model = Decoder(vocab=13, dim=16, layers=2, heads=4, seq_len=4)
    x = torch.randint(0, 13, (8, 4))
    h = model.tokens(x) + model.positions(torch.arange(4))
    for block in model.blocks:
        h = block(h)  # every position, causal mask
    full = model.head(model.ln_f(h[:, -1]))
    torch.testing.assert_close(model(x), full)


def test_training_is_deterministic_for_a_seed():
    s = G.settings(TINY)
    a = G.train(s, 123, use_filter=True, device=CPU)
    b = G.train(s, 123, use_filter=True, device=CPU)
    c = G.train(s, 124, use_filter=True, device=CPU)
    assert a.curve == b.curve and a.fingerprint == b.fingerprint
    assert [step for step, *_ in a.curve] == [4, 8, 12]
    assert c.fingerprint != a.fingerprint


def test_both_sides_start_alike_and_only_the_filter_differs():
    s = G.settings({**TINY, "max_steps": 8})
    base = G.train(s, 5, use_filter=False, device=CPU)
    filt = G.train(s, 5, use_filter=True, device=CPU)
    assert base.fingerprint == filt.fingerprint
    assert base.final_digest != filt.final_digest
    # With lambda = 0 the filter adds nothing: bit-identical to the baseline.
    off = G.train(
        G.settings({**TINY, "max_steps": 8, "filter_lambda": 0.0}), 5, use_filter=True, device=CPU
    )
    assert off.final_digest == base.final_digest and off.curve == base.curve


def test_small_budget_gives_censored_rows_valued_at_the_budget():
    frame = G.run({**TINY, "max_steps": 3, "eval_every": 2}, seed=9)
    steps = frame[frame["metric"] == "steps_to_generalize"]
    assert sorted(steps["case"]) == ["baseline", "baseline", "grokfast", "grokfast"]
    assert (steps["status"] == "censored").all()
    assert (steps["value"] == 3.0).all()
    assert sorted(steps["repetition"]) == [0, 0, 1, 1]
    times = frame[frame["metric"] == "time_to_generalize"]
    assert (times["status"] == "censored").all() and (times["value"] > 0).all()
    curve = frame[frame["metric"] == "val_acc"]
    assert sorted(set(curve["sample"])) == [2, 3]  # every eval_every steps and at the budget
    assert (curve["value"].between(0, 1)).all()


def test_generalised_run_reports_the_first_step_over_threshold():
    # A threshold at chance level is crossed early: the row must name the first evaluated
    # step whose validation accuracy reached it, status ok.
    cfg = {**TINY, "threshold": 0.05, "max_steps": 40, "eval_every": 2, "seeds": 1}
    frame = G.run(cfg, seed=1)
    for case in G.CASES:
        rows = frame[frame["case"] == case]
        steps = rows[rows["metric"] == "steps_to_generalize"].iloc[0]
        val = rows[rows["metric"] == "val_acc"].sort_values("sample")
        crossed = val[val["value"] >= cfg["threshold"]]
        if steps["status"] == "ok":
            assert steps["value"] == crossed["sample"].iloc[0]
            assert val["sample"].max() == steps["value"]  # training stopped there
        else:
            assert steps["status"] == "censored" and crossed.empty
    assert (frame.loc[frame["metric"] == "steps_to_generalize", "status"] == "ok").any()


def test_failed_run_is_a_row_not_a_gap(monkeypatch):
    real_train = G.train

    def flaky(s, seed, *, use_filter, device, max_steps=None):
        if use_filter:
            raise RuntimeError("out of memory")
        return real_train(s, seed, use_filter=use_filter, device=device, max_steps=max_steps)

    monkeypatch.setattr(G, "train", flaky)
    frame = G.run({**TINY, "seeds": 1, "max_steps": 2, "eval_every": 2}, seed=0)
    failed = frame[(frame["case"] == "grokfast") & frame["metric"].str.endswith("_generalize")]
    assert list(failed["status"]) == ["error:RuntimeError"] * 2
    assert failed["value"].isna().all()
    base = frame[(frame["case"] == "baseline") & (frame["metric"] == "steps_to_generalize")]
    assert list(base["status"]) == ["censored"]


def test_different_starting_points_are_a_mismatch(monkeypatch):
    real_train = G.train

    def skewed(s, seed, *, use_filter, device, max_steps=None):
        out = real_train(s, seed, use_filter=use_filter, device=device, max_steps=max_steps)
        if use_filter:
            out.fingerprint = "other"
        return out

    monkeypatch.setattr(G, "train", skewed)
    frame = G.run({**TINY, "seeds": 1, "max_steps": 2, "eval_every": 2}, seed=0)
    rows = frame[frame["metric"] == "steps_to_generalize"]
    assert (rows["status"] == "mismatch").all() and rows["value"].isna().all()


@pytest.mark.parametrize(
    ("key", "value"),
    [("device", "tpu"), ("dim", 15), ("operation", "pow"), ("threshold", 0.0), ("seeds", 0)],
)
def test_bad_config_names_its_key(key, value):
    with pytest.raises(ForgebenchError, match=rf"suites\.training\.benchmarks\.grokfast\.{key}"):
        G.settings({**TINY, key: value})


def test_div_needs_a_prime_modulus():
    with pytest.raises(ForgebenchError, match="modulus"):
        G.settings({**TINY, "operation": "div", "modulus": 12})


def test_cuda_without_a_gpu_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ForgebenchError, match="device"):
        G.resolve_device("cuda")
    assert G.resolve_device("auto") == CPU


def test_threads_are_set_and_restored(monkeypatch):
    seen = []
    real_measure = G.measure
    monkeypatch.setattr(
        G, "measure", lambda *a, **k: seen.append(torch.get_num_threads()) or real_measure(*a, **k)
    )
    G.run({**TINY, "seeds": 1, "max_steps": 1, "eval_every": 1, "threads": 2}, seed=0)
    assert seen == [2]
    assert torch.get_num_threads() == 1


def test_run_seeds_differ_and_repeat():
    assert G.run_seed(1, 0) == G.run_seed(1, 0)
    assert len({G.run_seed(1, i) for i in range(10)} | {G.run_seed(2, 0)}) == 11


def _schema_with_training(tmp_path):
    """config/schema.yaml with the training fragment referenced (as the lead wires it)."""
    shutil.copytree(REPO / "config" / "schemas", tmp_path / "schemas")
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    schema["properties"]["suites"]["properties"]["training"] = {
        "$ref": "schemas/training.schema.yaml"
    }
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(schema))
    return path


def test_schema_defaults_are_a_valid_config(tmp_path):
    config = {"suites": {"training": {"benchmarks": {"grokfast": {}}}}}
    check_config(config, _schema_with_training(tmp_path))
    section = benchmark_config(config, "training", "grokfast")
    s = G.settings(section)
    assert (s.modulus, s.operation, s.train_fraction, s.batch_size) == (97, "add", 0.5, 512)
    assert (s.alpha, s.lamb, s.threshold, s.device) == (0.98, 2.0, 0.95, "auto")
    assert s.threads is None


def test_schema_rejects_unknown_keys(tmp_path):
    config = {"suites": {"training": {"benchmarks": {"grokfast": {"max_step": 5}}}}}
    with pytest.raises(ForgebenchError, match="max_steps"):
        check_config(config, _schema_with_training(tmp_path))
