"""system/import_time: fresh interpreters, cold vs warm bytecode cache, lazy vs eager CLI."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from forgebench import cli as cli_module
from forgebench.errors import ForgebenchError
from forgebench.record import COLUMNS
from forgebench.system import import_time
from forgebench.system.import_time import (
    ChildResult,
    ImportLine,
    Job,
    Run,
    check_answers,
    execute,
    module_job,
    parse_importtime,
    top_level_cumulative,
)

SCHEMA = Path(__file__).resolve().parents[1] / "config" / "schemas" / "system.schema.yaml"

TINY = {
    "modules": ["json"],
    "cache_modules": ["json"],
    "cli": False,
    "repetitions": 2,
    "rounds": 3,
    "top_modules": 3,
    "timeout_s": 60,
}


@pytest.fixture(scope="module")
def tiny_frame():
    return import_time.run(TINY, seed=7)


def test_tiny_run_rows(tiny_frame):
    frame = tiny_frame
    assert list(frame.columns) == list(COLUMNS)
    assert (frame["status"] == "ok").all(), frame[frame["status"] != "ok"]
    assert (frame["suite"] == "system").all() and (frame["benchmark"] == "import_time").all()
    head = frame[frame["metric"] == "import_time"]
    # warm-up round (one warm import) + 3 rounds: warm in all, cold in all
    counts = head.groupby(["case", "warmup"]).size().to_dict()
    assert counts == {
        ("warm_cache_json", True): 1,
        ("warm_cache_json", False): 3,
        ("cold_cache_json", False): 3,
    }
    assert sorted(head["repetition"].unique()) == [0, 1, 2, 3]
    assert (head["value"] > 0).all() and (head["value"] < 60).all()
    # the breakdown: 3 slowest modules per case, self and cumulative, each measured run
    for case in ("warm_cache_json", "cold_cache_json"):
        for metric in ("self_time", "cumulative_time"):
            sel = frame[(frame["case"] == case) & (frame["metric"] == metric)]
            assert sel["params"].nunique() == 3 and len(sel) == 9
            assert not sel["warmup"].any()
    cum = frame[frame["metric"] == "import_cumulative"]
    wall = head.set_index(["case", "repetition"])["value"]
    for row in cum.itertuples():  # the import alone is part of the subprocess wall time
        assert 0 < row.value < wall[(row.case, row.repetition)]


def test_cold_and_warm_import_the_same_modules(tiny_frame):
    counted = tiny_frame[tiny_frame["metric"] == "modules_imported"]
    assert counted["value"].nunique() == 1 and counted["value"].iloc[0] > 10


def test_params_pair_the_cases(tiny_frame):
    head = tiny_frame[tiny_frame["metric"] == "import_time"]
    params = head.groupby("case")["params"].unique()
    assert [len(p) for p in params] == [1, 1]
    assert '"bytecode_cache":"cold"' in params["cold_cache_json"][0]
    assert '"bytecode_cache":"warm"' in params["warm_cache_json"][0]


def test_order_within_rounds_follows_the_seed():
    s = import_time.settings({**TINY, "modules": ["json", "csv"]})

    def order(seed):
        return [(r, job.case) for r, job in import_time.run_order(s, seed)]

    assert order(1) == order(1)
    assert any(order(1) != order(seed) for seed in range(2, 6))
    assert sorted(order(1)) == sorted(order(2))  # the same runs, in another order
    rounds = [r for r, _ in order(1)]
    assert rounds == sorted(rounds)  # shuffled within rounds only


def test_schedule_counts():
    s = import_time.settings(
        {**TINY, "modules": ["json", "csv"], "cache_modules": ["json"], "cli": True}
    )
    plan = import_time.schedule(s)
    cases = [sorted(j.case for j in jobs) for jobs in plan]
    assert cases[0] == ["cli_eager", "cli_lazy", "warm_cache_csv", "warm_cache_json"]
    flat = [c for jobs in cases[1:] for c in jobs]
    assert flat.count("warm_cache_csv") == 2  # repetitions
    assert flat.count("warm_cache_json") == 3  # rounds: the warm side of its comparison
    assert flat.count("cold_cache_json") == 3
    assert flat.count("cli_eager") == flat.count("cli_lazy") == 3


def test_parse_importtime_of_a_real_run():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import json"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = parse_importtime(proc.stderr)
    names = [ln.name for ln in lines]
    assert "json" in names and "json.decoder" in names
    top = next(ln for ln in lines if ln.name == "json")
    nested = next(ln for ln in lines if ln.name == "json.decoder")
    assert top.depth == 0 and nested.depth >= 1
    assert top.cumulative_s >= nested.cumulative_s and top.cumulative_s >= top.self_s
    assert top_level_cumulative(lines, "json") == top.cumulative_s


def test_top_level_cumulative_of_dotted_names_and_startup_modules():
    lines = [
        ImportLine("a", 0, 0.1, 0.5),
        ImportLine("a.x", 1, 0.2, 0.2),
        ImportLine("a.b", 0, 0.3, 0.3),
    ]
    assert top_level_cumulative(lines, "a.b") == pytest.approx(0.8)
    assert top_level_cumulative(lines, "zzz") is None


def test_slowest_modules_by_median_self_time():
    def fake(*pairs):
        return Run(
            module_job("m", "warm"),
            1,
            None,
            ChildResult(0, 1.0, b"", b""),
            lines=[ImportLine(n, 1, s, s) for n, s in pairs],
        )

    runs = [fake(("a", 0.1), ("b", 0.5)), fake(("a", 0.1), ("b", 0.4)), fake(("a", 0.9))]
    assert import_time.slowest_modules(runs, 1) == ["b"]
    assert import_time.slowest_modules(runs, 5) == ["b", "a"]
    assert import_time.slowest_modules(runs, 0) == []


def _run(job: Job, round_: int, *, stdout=b"", names=("x",)) -> Run:
    return Run(
        job,
        round_,
        None,
        ChildResult(0, 0.1, stdout, b""),
        lines=[ImportLine(n, 0, 0.01, 0.01) for n in names],
    )


def test_a_different_module_set_is_a_mismatch():
    job_w, job_c = module_job("m", "warm"), module_job("m", "cold")
    runs = [
        _run(job_w, 0, names=("m", "m.a")),
        _run(job_c, 1, names=("m", "m.a")),
        _run(job_c, 2, names=("m", "m.a", "m.extra")),
        _run(job_w, 2, names=("m",)),
    ]
    check_answers(runs)
    assert [r.status for r in runs] == ["ok", "ok", "mismatch", "mismatch"]


def test_cli_output_must_match_the_lazy_cli():
    runs = [
        _run(import_time.CLI_LAZY, 0, stdout=b"usage: forgebench\n"),
        _run(import_time.CLI_EAGER, 0, stdout=b"usage: forgebench\n"),
        _run(import_time.CLI_EAGER, 1, stdout=b"usage: forgebench \n"),
    ]
    check_answers(runs)
    assert [r.status for r in runs] == ["ok", "ok", "mismatch"]


def test_without_a_good_reference_nothing_counts():
    cold = _run(module_job("m", "cold"), 1)
    warm = _run(module_job("m", "warm"), 0)
    warm.status = "timeout"
    check_answers([warm, cold])
    assert cold.status == "error:NoReference"


def test_eager_and_lazy_cli_print_identical_help():
    outputs = []
    for argv in (import_time.LAZY_CLI, import_time.EAGER_CLI):
        proc = subprocess.run(
            [sys.executable, *argv],
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(import_time.SRC_DIR)},
            timeout=120,
        )
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1] and outputs[0].startswith(b"usage: forgebench")


def _imports(tree: ast.AST) -> set[str]:
    """Modules named by the import statements under ``tree`` (``from a import b``: ``a``,
    and ``a.b`` where that is a module)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            names.add(node.module)
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if importlib.util.find_spec(node.module).submodule_search_locations and (
                    importlib.util.find_spec(sub) is not None
                ):
                    names.add(sub)
    return names


def test_eager_cli_imports_everything_the_cli_commands_import():
    cli = ast.parse(Path(cli_module.__file__).read_text())
    lazy = set()
    for fn in ast.walk(cli):
        if isinstance(fn, ast.FunctionDef):
            lazy |= _imports(fn)
    eager_tree = ast.parse(Path(import_time.SRC_DIR, "forgebench/system/eager_cli.py").read_text())
    top_level = _imports(ast.Module(body=eager_tree.body, type_ignores=[]))
    assert lazy and lazy - {"forgebench"} <= top_level, sorted(lazy - top_level)


def test_failed_import_is_a_failed_row(tmp_path):
    job = Job("broken", ("-c", "raise KeyError('x')"), "warm")
    run = execute(job, round_=1, work_dir=tmp_path, warm_prefix=tmp_path, timeout_s=60)
    assert run.status == "error:KeyError"
    job = Job("exits", ("-c", "import sys; sys.exit(3)"), "warm")
    run = execute(job, round_=1, work_dir=tmp_path, warm_prefix=tmp_path, timeout_s=60)
    assert run.status == "error:ExitCode3"


def test_hanging_child_is_a_timeout_and_is_killed(tmp_path):
    pid_file = tmp_path / "pid"
    code = f"import os, threading; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
    code += "threading.Event().wait()"
    job = Job("hangs", ("-c", code), "warm")
    run = execute(job, round_=1, work_dir=tmp_path, warm_prefix=tmp_path, timeout_s=3)
    assert run.status == "timeout"
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists()


def test_cold_prefix_is_fresh_and_removed(tmp_path):
    warm = tmp_path / "warm"
    warm.mkdir()
    run = execute(
        module_job("json", "cold"), round_=1, work_dir=tmp_path, warm_prefix=warm, timeout_s=60
    )
    assert run.status == "ok"
    assert not any(warm.iterdir())  # the cold run wrote elsewhere
    assert [p.name for p in tmp_path.iterdir()] == ["warm"]  # ...and that is gone


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        ({"modules": ["no_such_module_fb"]}, "import_time.modules"),
        ({"modules": ["json; import os"]}, "import_time.modules"),
        ({"modules": []}, "import_time.modules"),
        ({"cache_modules": ["no_such_module_fb"]}, "import_time.cache_modules"),
        ({"rounds": 0}, "import_time.rounds"),
        ({"timeout_s": 0}, "import_time.timeout_s"),
    ],
)
def test_mistakes_name_the_key(cfg, key):
    with pytest.raises(ForgebenchError, match=rf"suites\.system\.benchmarks\.{key}"):
        import_time.run({**TINY, **cfg}, seed=0)


def _fragment() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def test_schema_fragment_is_valid_and_defaults_match_the_code():
    schema = _fragment()
    Draft202012Validator.check_schema(schema)
    props = schema["properties"]["benchmarks"]["properties"]["import_time"]["properties"]
    defaults = {k: v["default"] for k, v in props.items() if k != "enabled"}
    s = import_time.settings({})  # the code's own fallbacks
    assert list(s.modules) == defaults["modules"]
    assert list(s.cache_modules) == defaults["cache_modules"]
    assert (s.cli, s.repetitions, s.rounds, s.top_modules, s.timeout_s) == (
        defaults["cli"],
        defaults["repetitions"],
        defaults["rounds"],
        defaults["top_modules"],
        defaults["timeout_s"],
    )
    validator = Draft202012Validator(schema)
    assert not list(validator.iter_errors({"benchmarks": {"import_time": TINY}}))
    bad = {"benchmarks": {"import_time": {**TINY, "modules": ["a b"]}}}
    assert list(validator.iter_errors(bad))
