"""Our fb_* tasks render exactly what lm-eval's built-in tasks render from the same documents.

The built-in task of each dataset is built from lm-eval 0.4.13's own YAML with only its data
source swapped for our Parquet files; every document of the evaluated split goes through both
and prompts, choices and targets must be identical, and so must seeded few-shot contexts. The
built-in HumanEval/MBPP utils load the hub metric `code_eval` at import, so their functions
are read from the installed file without running that module-level hub call.
"""

from __future__ import annotations

import ast
import inspect
import os
import random
import types
from pathlib import Path

os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

import lm_eval
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATASETS
from lm_eval.api.task import ConfigurableTask
from lm_eval.tasks._yaml_loader import load_yaml

from forgebench.datasets import DATASET_NAMES, prepare
from forgebench.errors import ForgebenchError
from forgebench.evaluation.tasks import TASKS, TASKS_DIR, task_manager

BUILTIN_DIR = Path(lm_eval.__file__).parent / "tasks"
BUILTIN_YAML = {
    "arc_challenge": "arc/arc_challenge.yaml",
    "arc_easy": "arc/arc_easy.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "humaneval": "humaneval/humaneval.yaml",
    "mbpp": "mbpp/mbpp.yaml",
    "gsm8k": "gsm8k/gsm8k.yaml",
    "boolq": "super_glue/boolq/default.yaml",
    "piqa": "piqa/piqa.yaml",
    "winogrande": "winogrande/default.yaml",
}
CODE_TASKS = {"humaneval", "mbpp"}  # built-in utils call the hub at import
# Keys where ours differ from the built-in, and why (anything else must be equal).
DATA_KEYS = {"task", "tag", "dataset_path", "dataset_name", "dataset_kwargs"}
ALLOWED_DIFFS = {
    # no train split offline: few-shot is refused instead of drawn from the evaluated split
    "hellaswag": {"training_split", "fewshot_config"},
    "boolq": {"training_split", "fewshot_config"},
    "piqa": {"training_split", "fewshot_config"},
    "winogrande": {"training_split", "fewshot_config"},
    # offline sandboxed metric in place of hub code_eval (same name and signature)
    "humaneval": {"metric_list", "filter_list"},
    # ... and the built-in's three few-shot docs read from the prompt split
    "mbpp": {"metric_list", "fewshot_config", "filter_list"},  # + a filter queueing completions
}
FEWSHOT = {"arc_challenge": 5, "arc_easy": 5, "gsm8k": 5, "mbpp": 3}
FEWSHOT_SAMPLE = 25
FAST_DOCS = 40


def _builtin_utils(path: Path) -> types.ModuleType:
    """The functions of a built-in utils.py, without its module-level hub call."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    tree.body = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.ImportFrom)
        or (isinstance(node, ast.Import) and all(a.name != "evaluate" for a in node.names))
    ]
    module = types.ModuleType(f"builtin_{path.parent.name}_utils")
    exec(compile(tree, str(path), "exec"), module.__dict__)
    return module


def _resolve_strings(value, utils: types.ModuleType):
    """Replace `!function utils.x` references (unresolved: '<dir>/utils.x') by utils.x."""
    if isinstance(value, dict):
        return {k: _resolve_strings(v, utils) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_strings(v, utils) for v in value]
    if isinstance(value, str) and value.startswith(str(BUILTIN_DIR)) and "/utils." in value:
        return getattr(utils, value.rsplit(".", 1)[1])
    return value


def _builtin_config(name: str) -> dict:
    path = BUILTIN_DIR / BUILTIN_YAML[name]
    if name in CODE_TASKS:
        cfg = _resolve_strings(
            load_yaml(path, resolve_func=False), _builtin_utils(path.parent / "utils.py")
        )
    else:
        cfg = load_yaml(path, resolve_func=True)
    cfg.pop("tag", None)
    return cfg


def _builtin_task(name: str, datasets_dir: Path, cache_dir: Path) -> ConfigurableTask:
    """lm-eval's built-in task for ``name``, fed our Parquet files instead of the hub."""
    cfg = _builtin_config(name)
    splits = {p.stem: str(p) for p in (datasets_dir / name).glob("*.parquet")}
    cfg.update(
        dataset_path="parquet",
        dataset_name=None,
        dataset_kwargs={"data_files": splits, "cache_dir": str(cache_dir)},
    )
    if cfg.get("training_split") not in splits:
        cfg["training_split"] = None  # lm-eval then takes few-shot docs from validation
    return ConfigurableTask(config=cfg)


@pytest.fixture(scope="module")
def datasets_dir(tmp_path_factory) -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"dataset mirror {SHARED_DATASETS} not found")
    out = tmp_path_factory.mktemp("datasets")
    for name in DATASET_NAMES:
        prepare(name, mirror=SHARED_DATASETS, allow_online=False, out_dir=out / name)
    return out


@pytest.fixture(scope="module")
def task_pairs(datasets_dir, tmp_path_factory):
    """(ours, built-in) task per dataset, loaded once."""
    cache = tmp_path_factory.mktemp("hf_cache")
    manager = task_manager(datasets_dir, cache_dir=cache)
    pairs = {}
    for task_name, info in TASKS.items():
        ours = manager.load([task_name])["tasks"][task_name]
        pairs[info.dataset] = (ours, _builtin_task(info.dataset, datasets_dir, cache))
    return pairs


def _render(task: ConfigurableTask, doc: dict) -> tuple:
    choices = task.doc_to_choice(doc) if task.config.doc_to_choice is not None else None
    return task.doc_to_text(doc), choices, task.doc_to_target(doc)


def _docs(task: ConfigurableTask) -> list[dict]:
    docs = task.eval_docs
    return docs.to_list() if hasattr(docs, "to_list") else list(docs)


def _compare_docs(name: str, pair, limit: int | None) -> int:
    ours, builtin = pair
    our_docs, builtin_docs = _docs(ours), _docs(builtin)
    assert len(our_docs) == len(builtin_docs) > 0
    if limit is not None:  # a fixed spread over the whole split, first and last included
        step = max(1, len(our_docs) // limit)
        picked = sorted({*range(0, len(our_docs), step), len(our_docs) - 1})
    else:
        picked = range(len(our_docs))
    for i in picked:
        assert our_docs[i] == builtin_docs[i], f"{name} doc {i}"
        assert _render(ours, our_docs[i]) == _render(builtin, builtin_docs[i]), f"{name} doc {i}"
    return len(picked)


def test_every_dataset_has_a_task():
    assert sorted(info.dataset for info in TASKS.values()) == sorted(DATASET_NAMES)
    assert sorted(p.stem for p in TASKS_DIR.glob("fb_*.yaml")) == sorted(TASKS)


def _same(a, b) -> bool:
    if callable(a) and callable(b):  # the same function of the same file
        return (Path(a.__code__.co_filename).resolve(), a.__qualname__) == (
            Path(b.__code__.co_filename).resolve(),
            b.__qualname__,
        )
    return a == b


@pytest.mark.parametrize("name", sorted(BUILTIN_YAML))
def test_settings_equal_builtin(name):
    """Every key but the data binding (and the listed, explained ones) equals the built-in's."""
    ours = load_yaml(TASKS_DIR / f"fb_{name}.yaml", resolve_func=True)
    builtin = _builtin_config(name)
    skip = DATA_KEYS | ALLOWED_DIFFS.get(name, set())
    for key in (set(ours) | set(builtin)) - skip:
        a, b = ours.get(key), builtin.get(key)
        assert _same(a, b), f"{name}: {key} differs: {a!r} vs built-in {b!r}"


@pytest.mark.parametrize("name", sorted(BUILTIN_YAML))
def test_render_sample_equals_builtin(task_pairs, name):
    assert _compare_docs(name, task_pairs[name], FAST_DOCS) >= FAST_DOCS


@pytest.mark.parametrize("name", sorted(BUILTIN_YAML))
def test_render_every_document_equals_builtin(task_pairs, name):
    _compare_docs(name, task_pairs[name], None)


@pytest.mark.parametrize("name", sorted(FEWSHOT))
def test_fewshot_context_equals_builtin(task_pairs, name):
    ours, builtin = task_pairs[name]
    our_docs, builtin_docs = ours.eval_docs, builtin.eval_docs
    picked = random.Random(7).sample(range(len(our_docs)), FEWSHOT_SAMPLE)
    for task in (ours, builtin):
        task.set_fewshot_seed(1234)
    for i in picked:
        a = ours.fewshot_context(our_docs[i], FEWSHOT[name])
        b = builtin.fewshot_context(builtin_docs[i], FEWSHOT[name])
        assert a == b, f"{name} doc {i}"
        assert a.count(ours.config.fewshot_delimiter) >= FEWSHOT[name]


@pytest.mark.parametrize("name", ["hellaswag", "boolq", "piqa", "winogrande"])
def test_fewshot_refused_without_train_split(task_pairs, name):
    ours, builtin = task_pairs[name]
    doc = ours.eval_docs[0]
    assert ours.fewshot_context(doc, 0) == builtin.fewshot_context(doc, 0)
    with pytest.raises(ForgebenchError, match="train split"):
        ours.fewshot_context(doc, 1)


def test_mbpp_fewshot_docs_are_builtin_samples(task_pairs):
    ours, _ = task_pairs["mbpp"]
    utils = _builtin_utils(BUILTIN_DIR / "mbpp" / "utils.py")
    builtin = utils.list_fewshot_samples()
    got = ours.sampler.sample(3)
    assert [{k: d[k] for k in b} for d, b in zip(got, builtin, strict=True)] == builtin


def test_code_utils_match_builtin_and_score_offline():
    import importlib.util

    spec = importlib.util.spec_from_file_location("fb_code_utils", TASKS_DIR / "code_utils.py")
    ours = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ours)
    builtin = _builtin_utils(BUILTIN_DIR / "humaneval" / "utils.py")
    resps = [["    return 1\n", "    pass\n"], ["x"]]
    docs = [{"prompt": "def f():\n"}, {"prompt": "y = "}]
    assert ours.build_predictions(resps, docs) == builtin.build_predictions(resps, docs)
    # lm-eval names a metric after its function: keep the built-ins' names and parameters
    assert ours.pass_at_k.__name__ == "pass_at_k" and ours.pass_at_1.__name__ == "pass_at_1"
    assert list(inspect.signature(ours.pass_at_k).parameters) == list(
        inspect.signature(builtin.pass_at_k).parameters
    )
    mbpp = _builtin_utils(BUILTIN_DIR / "mbpp" / "utils.py")
    assert list(inspect.signature(ours.pass_at_1).parameters) == list(
        inspect.signature(mbpp.pass_at_1).parameters
    )
    # scored by forgebench.evaluation.code_exec, offline: a right and a wrong candidate
    assert ours.pass_at_1(["assert f() == 1"], [["def f(): return 1"]]) == 1.0
    assert ours.pass_at_k(["assert f() == 1"], [["def f(): return 2"]], k=[1]) == {"pass@1": 0.0}


@pytest.mark.parametrize("name", ["arc_challenge", "arc_easy", "hellaswag", "piqa", "winogrande"])
def test_rows_equal_hf_validation_copy(datasets_dir, name):
    hf = pa.ipc.open_stream(
        SHARED_DATASETS / name / "hf_validation" / "data-00000-of-00001.arrow"
    ).read_all()
    ours = pq.read_table(datasets_dir / name / "validation.parquet")
    assert ours.column_names == hf.column_names
    assert ours.to_pylist() == hf.to_pylist()


def test_boolq_agrees_with_hf_boolq_copy(datasets_dir):
    """HF `boolq` has no title in the passage and a bool answer; SuperGLUE's has both."""
    hf = pa.ipc.open_stream(
        SHARED_DATASETS / "boolq" / "hf_validation" / "data-00000-of-00001.arrow"
    ).read_all()
    ours = pq.read_table(datasets_dir / "boolq" / "validation.parquet").to_pylist()
    hf_rows = hf.to_pylist()
    assert len(ours) == len(hf_rows) == 3270
    for a, b in zip(ours, hf_rows, strict=True):
        assert a["question"] == b["question"]
        assert a["label"] == int(b["answer"])
        assert a["passage"].endswith(b["passage"])


def test_missing_prepared_file_names_the_dataset(tmp_path):
    manager = task_manager(tmp_path)
    with pytest.raises(ForgebenchError, match="prepare dataset 'piqa'"):
        manager.load(["fb_piqa"])
