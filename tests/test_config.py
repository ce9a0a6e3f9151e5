"""A bad config fails before any job starts, with a message naming the key."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import pytest
import yaml

from forgebench.config import SCHEMA_PATH, check_config, load_yaml
from forgebench.errors import ForgebenchError
from forgebench.workflow import check_references, enabled_benchmarks, final_outputs

DEFAULT = load_yaml(SCHEMA_PATH.parent / "config.yaml")
ECHO = ("suites", "network", "benchmarks", "echo_latency")


def _mutated(path: tuple, key: str, value: object) -> dict:
    config = copy.deepcopy(DEFAULT)
    node = config
    for part in path:
        node = node[part]
    node[key] = value
    return config


CASES = {
    "misspelt key": (
        _mutated(ECHO, "min_requets", 5),
        r"'suites\.network\.benchmarks\.echo_latency\.min_requets' "
        r"\(did you mean 'min_requests'\?\)",
    ),
    "misspelt top-level key": (
        _mutated((), "sede", 5),
        r"unknown config key 'sede' \(did you mean 'seed'\?\)",
    ),
    "wrong type": (
        _mutated(ECHO, "timeout_s", "fast"),
        r"'suites\.network\.benchmarks\.echo_latency\.timeout_s': 'fast' is not of type 'number'",
    ),
    "out of range": (
        _mutated(("statistics",), "confidence", 1.5),
        r"'statistics\.confidence': 1\.5 is greater than or equal to the maximum of 1",
    ),
    "negative count": (
        _mutated(ECHO, "min_requests", 0),
        r"'suites\.network\.benchmarks\.echo_latency\.min_requests': "
        r"0 is less than the minimum of 1",
    ),
    "bad enum": (
        _mutated(ECHO, "scenarios", ["persistent", "udp"]),
        r"'suites\.network\.benchmarks\.echo_latency\.scenarios\.1': 'udp' is not one of",
    ),
}


@pytest.mark.parametrize(
    "path",
    [
        SCHEMA_PATH.parent / "config.yaml",
        SCHEMA_PATH.parent / "full.yaml",
        SCHEMA_PATH.parents[1] / "tests" / "configs" / "tiny.yaml",
        SCHEMA_PATH.parents[1] / "tests" / "configs" / "tiny_cluster.yaml",
    ],
    ids=lambda p: p.name,
)
def test_shipped_configs_are_valid(path):
    config = load_yaml(path)
    check_config(config)
    check_references(config)


def test_the_default_run_includes_the_mini_evolution():
    """The original's mini evolution over three cognate seeds trained alike."""
    from forgebench.evomerge import stages

    stages.check_config(DEFAULT)
    assert stages.enabled(DEFAULT) and len(stages.individuals(DEFAULT)) == 7
    seeds = [DEFAULT["models"][s] for s in stages.section(DEFAULT)["seeds"]]
    assert len({json.dumps(s["training"], sort_keys=True) for s in seeds}) == 1


def test_default_config_is_valid():
    check_config(DEFAULT)
    check_references(DEFAULT)
    assert {s.key for s in enabled_benchmarks(DEFAULT)} >= {"network/echo_latency"}
    assert "results/report/index.html" in final_outputs(DEFAULT)


@pytest.mark.parametrize("name", sorted(CASES))
def test_mistakes_name_the_key(name):
    config, message = CASES[name]
    with pytest.raises(ForgebenchError, match=message):
        check_config(config)


def test_defaults_are_filled_inside_suite_fragments():
    config = {"suites": {"network": {"benchmarks": {"echo_latency": {}}}}}
    check_config(config)
    echo = config["suites"]["network"]["benchmarks"]["echo_latency"]
    assert echo["payload_sizes"] == [64, 1024, 65536]
    assert echo["enabled"] is True
    assert config["statistics"]["practical_threshold"] == 0.05


def test_reference_to_unknown_comparison_is_rejected():
    config = copy.deepcopy(DEFAULT)
    i = next(i for i, t in enumerate(config["targets"]) if "comparison" in t)
    config["targets"][i]["comparison"] = "nope"
    with pytest.raises(
        ForgebenchError, match=rf"targets\.{i}\.comparison.*no comparison named 'nope'"
    ):
        check_references(config)


def test_unknown_benchmark_suggests_close_names():
    config = copy.deepcopy(DEFAULT)
    config["comparisons"][0]["benchmark"] = "sampler_overhed"
    with pytest.raises(ForgebenchError, match="Did you mean: harness/sampler_overhead"):
        check_references(config)


@pytest.mark.workflow
@pytest.mark.parametrize("name", ["misspelt key", "wrong type", "out of range"])
def test_snakemake_stops_before_any_job(tmp_path, repo, name):
    """The same mistakes stop `snakemake` at parse time: no job runs, no output appears."""
    config, message = CASES[name]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "1",
            "--snakefile",
            str(repo / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "invalid config" in proc.stderr + proc.stdout
    key = message.split("'")[1].replace("\\", "")
    assert key in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()


def test_every_suite_fragment_is_referenced_and_declares_its_dialect():
    """snakemake.utils.validate cannot read a fragment without $schema (the run stops)."""
    schema = load_yaml(SCHEMA_PATH)
    refs = {v["$ref"] for v in schema["properties"]["suites"]["properties"].values()}
    for fragment in sorted((SCHEMA_PATH.parent / "schemas").glob("*.schema.yaml")):
        assert "$schema" in load_yaml(fragment), fragment.name
    for ref in refs:
        assert (SCHEMA_PATH.parent / ref.split("#")[0]).is_file(), ref


# ------------------------------------------------------------- models a stage names


def _with(**changes: object) -> dict:
    """The default config with keys (dotted paths, as config errors name them) replaced."""
    config = copy.deepcopy(DEFAULT)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = config
        for part in parents:
            node = node[part]
        node[last] = value
    return config


def _checked(config: dict) -> dict:
    """``config`` with the schema's defaults filled in, as the Snakefile sees it."""
    check_config(config)
    return config


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            _with(evaluation__models=["cognate", "cognate-s22"]),
            r"'evaluation\.models\.1': no model named 'cognate-s22' \(did you mean 'cognate-s2'",
        ),
        (
            _with(evaluation__paired=[{"baseline": "smollm2", "candidate": "smollm2__int9"}]),
            r"'evaluation\.paired\.0\.candidate': .*'smollm2__int9' \(did you mean 'smollm2__int8'",
        ),
        (
            _with(suites__compression__models=["cogante"]),
            r"'suites\.compression\.models\.0': .*'cogante' \(did you mean 'cognate'",
        ),
        (
            _with(suites__knowledge__benchmarks__creativity={"model": "cognat"}),
            r"'suites\.knowledge\.benchmarks\.creativity\.model': no model named 'cognat'",
        ),
    ],
    ids=["evaluation.models", "paired", "compression", "benchmark"],
)
def test_an_undefined_model_is_a_config_error_with_close_names(config, message):
    check_config(config)
    with pytest.raises(ForgebenchError, match=message):
        check_references(config)


@pytest.mark.workflow
def test_snakemake_names_an_undefined_model_before_any_job(tmp_path, repo):
    """Not Snakemake's MissingInputException for results/models/<typo>: the config key."""
    overlay = tmp_path / "typo.yaml"
    overlay.write_text(yaml.safe_dump({"evaluation": {"models": ["cognate", "cognte"]}}))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile",
         str(repo / "config" / "config.yaml"), str(overlay), "--directory", str(tmp_path)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "'evaluation.models.1': no model named 'cognte'" in out, out[-2000:]
    assert "did you mean 'cognate'" in out
    assert "MissingInputException" not in out


def test_a_missing_path_model_folder_is_a_config_error(tmp_path):
    from forgebench.workflow import check_model_sources

    config = _with(evaluation__models=["mine"])
    config["models"]["mine"] = {"source": "path", "path": "no/such/folder"}
    with pytest.raises(ForgebenchError, match=r"'models\.mine\.path': 'no/such/folder' is not a"):
        check_model_sources(config, tmp_path)
    (tmp_path / "no" / "such" / "folder").mkdir(parents=True)
    check_model_sources(config, tmp_path)


def test_derived_models_may_be_evaluated_on_every_suite():
    config = _with(evaluation__models=["smollm2", "smollm2__int8"])
    check_references(config)


def test_only_models_a_stage_reads_are_built():
    from forgebench.workflow import used_models

    # Checked copies: the schema's defaults (evaluation enabled) decide what is read.
    assert used_models(_checked(copy.deepcopy(DEFAULT))) == [
        "smollm2",  # evaluated
        "cognate",  # read by benchmarks, and EvoMerge's seeds with the next two
        "cognate-s2",
        "cognate-s3",
    ]
    config = _checked(_with(evomerge__enabled=False))
    assert used_models(config) == ["smollm2", "cognate"]
    assert "results/raw/models/build/cognate-s2.parquet" not in final_outputs(config)


# ------------------------------------------------- overlays: extras and eval-only


def _overlay(*layers: dict) -> dict:
    from snakemake.utils import update_config

    config = copy.deepcopy(DEFAULT)
    for layer in layers:
        update_config(config, copy.deepcopy(layer))
    return config


EXTRA_COMPARISON = {
    "name": "echo 1 KiB vs 64 B",
    "suite": "network",
    "benchmark": "echo_latency",
    "metric": "rtt",
    "baseline": "persistent_64B",
    "candidate": "persistent_1024B",
}
EXTRA_TARGET = {
    "name": "echo p99 under 5 ms",
    "suite": "network",
    "benchmark": "echo_latency",
    "case": "persistent_64B",
    "metric": "rtt",
    "statistic": "p99",
    "op": "<",
    "threshold": 0.005,
}


def test_extra_comparisons_and_targets_are_appended_to_the_defaults():
    config = _overlay({"extra_comparisons": [EXTRA_COMPARISON], "extra_targets": [EXTRA_TARGET]})
    check_config(config)
    check_references(config)
    assert len(config["comparisons"]) == len(DEFAULT["comparisons"]) + 1
    assert len(config["targets"]) == len(DEFAULT["targets"]) + 1
    assert config["comparisons"][-1]["name"] == EXTRA_COMPARISON["name"]
    assert config["targets"][-1]["name"] == EXTRA_TARGET["name"]
    assert [t["name"] for t in config["targets"][:-1]] == [t["name"] for t in DEFAULT["targets"]]
    # The keys are consumed: a second check (the CLI checks once more) adds nothing twice.
    assert "extra_comparisons" not in config and "extra_targets" not in config
    check_config(config)
    assert len(config["targets"]) == len(DEFAULT["targets"]) + 1


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (
            {"extra_comparisons": [{**EXTRA_COMPARISON, "name": "sampler overhead"}]},
            r"'extra_comparisons\.0\.name': 'sampler overhead' is already the name of "
            r"'comparisons\.0'",
        ),
        (
            {"extra_targets": [EXTRA_TARGET, EXTRA_TARGET]},
            r"'extra_targets\.1\.name': 'echo p99 under 5 ms' is already the name of "
            r"'extra_targets\.0'",
        ),
        (
            {"extra_targets": [{**EXTRA_TARGET, "suit": "network"}]},
            r"unknown config key 'extra_targets\.0\.suit' \(did you mean 'suite'\?\)",
        ),
    ],
    ids=["duplicate of a default", "duplicate within extras", "misspelt key"],
)
def test_extra_entries_are_checked(layer, message):
    with pytest.raises(ForgebenchError, match=message):
        check_config(_overlay(layer))


def test_eval_only_overlay_runs_the_evaluation_of_ones_own_model_alone():
    """config/eval-only.yaml plus the README's two-line model file: the model's reference
    job, its evaluation and suite scores, the report and the history; nothing else."""
    only = load_yaml(SCHEMA_PATH.parent / "eval-only.yaml")
    schema = load_yaml(SCHEMA_PATH)
    assert set(only["suites"]) == set(schema["properties"]["suites"]["properties"])
    mine = {"models": {"mine": {"source": "path", "path": "/data/my-model"}},
            "evaluation": {"models": ["mine"]}}  # fmt: skip
    config = _overlay(only, mine)
    check_config(config)
    check_references(config)
    assert list(enabled_benchmarks(config)) == []
    suites = config["evaluation"]["suites"]
    assert final_outputs(config) == [
        "results/raw/models/build/mine.parquet",
        "results/raw/eval/mine.parquet",
        *(f"results/raw/suites/mine/{s}.parquet" for s in suites),
        "results/summary/summary.parquet",
        "results/summary/run.json",
        "results/report/index.html",
    ]


# ------------------------------------- every reference checked when the workflow is parsed


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            _with(comparisons=[{**DEFAULT["comparisons"][2], "candidate": "sqlite_joim"}]),
            r"'comparisons\.0\.candidate': no case of database/n_plus_one \(as configured\) "
            r"named 'sqlite_joim' \(did you mean 'sqlite_join'\?\); known: .*sqlite_batched_in, "
            r"sqlite_join, sqlite_n_plus_one",
        ),
        (
            _with(comparisons=[{**DEFAULT["comparisons"][2], "baseline": "postgres_n_plus_one"}]),
            r"'comparisons\.0\.baseline': no case of database/n_plus_one .*'postgres_n_plus_one'",
        ),
        (
            _with(targets=[{**EXTRA_TARGET, "case": "persistent_65B"}]),
            r"'targets\.0\.case': no case of network/echo_latency \(as configured\) named "
            r"'persistent_65B' \(did you mean 'persistent_64B'",
        ),
        (
            _with(
                targets=[
                    {
                        **EXTRA_TARGET,
                        "suite": "compression",
                        "benchmark": "weights",
                        "case": "seedml",
                    }
                ]
            ),
            r"'targets\.0\.case': no case of compression/weights .*'seedml' \(did you mean "
            r"'seedlm'",
        ),
        (
            _with(comparisons=[{**DEFAULT["comparisons"][2], "benchmark": "n_plus_on"}]),
            r"'comparisons\.0\.benchmark': unknown benchmark 'database/n_plus_on'",
        ),
        (
            _with(evomerge__seeds=["cognate", "cognat"]),
            r"'evomerge\.seeds\.1': no model under `models:` named 'cognat' \(did you mean "
            r"'cognate'",
        ),
        (
            _with(suites__compression__evaluate_tasks=["fb_arc_eas"]),
            r"'suites\.compression\.evaluate_tasks\.0': no lm-eval task .*'fb_arc_eas' \(did "
            r"you mean 'fb_arc_easy'",
        ),
        (
            _with(evaluation__per_task={"fb_gsm8": {"subset_size": 5}}),
            r"'evaluation\.per_task\.fb_gsm8': no lm-eval task .*\(did you mean 'fb_gsm8k'",
        ),
    ],
    ids=[
        "candidate",
        "case of a backend not run",
        "target case",
        "stage case",
        "benchmark",
        "evomerge seed",
        "compression task",
        "per_task",
    ],
)
def test_a_misspelt_reference_names_its_key_and_what_is_valid(config, message):
    with pytest.raises(ForgebenchError, match=message):
        check_references(_checked(config))


def test_the_shipped_references_are_all_declared_cases():
    """Every comparison and target case of the shipped configs is one its benchmark
    declares (config/full.yaml runs the postgres backends: their cases are declared)."""
    for name in ("config.yaml", "full.yaml"):
        config = _overlay(load_yaml(SCHEMA_PATH.parent / name))
        check_references(_checked(config))


def test_comparisons_and_targets_may_be_keyed_by_name():
    """The keyed-map shape (name: entry) is checked like the list, the key naming the entry."""
    from forgebench.workflow import config_entries

    config = copy.deepcopy(DEFAULT)
    comp = {k: v for k, v in DEFAULT["comparisons"][2].items() if k != "name"}
    config["comparisons"] = {"join": {**comp, "candidate": "sqlite_joim"}}
    assert config_entries(config, "comparisons")[0][:2] == ("comparisons.join", "join")
    with pytest.raises(ForgebenchError, match=r"'comparisons\.join\.candidate': no case"):
        check_references(config)


def test_declared_cases_follow_the_benchmark_config():
    from forgebench.workflow import declared_cases

    config = _with(suites__database__benchmarks__n_plus_one={"backends": ["sqlite", "postgres"]})
    cases = declared_cases(config, "database", "n_plus_one")
    assert {"sqlite_join", "postgres_join", "postgres_batched_in", "query:*", "job:*"} <= set(cases)
    echo = declared_cases(DEFAULT, "network", "echo_latency")
    assert "concurrent_4x65536B" in echo and "persistent_1024B" in echo
    assert declared_cases(DEFAULT, "eval", "fb_arc_easy") is None  # a task: any case


def test_declared_cases_cover_what_the_database_benchmarks_write():
    """The declaration is checked against a real run: every case written is declared."""
    import fnmatch

    from forgebench.database import connection_pooling, n_plus_one
    from forgebench.workflow import declared_cases

    shared = {"backends": ["sqlite"], "postgres_dsn": "", "timeout_s": 5.0}
    sizes = {"users": 20, "posts": 100, "comments": 300}
    runs = {
        "n_plus_one": n_plus_one.run(
            {**shared, "sizes": sizes, "page": 0, "page_size": 5, "executions": 2, "warmup": 1},
            seed=0,
        ),
        "connection_pooling": connection_pooling.run(
            {
                **shared,
                "sizes": sizes,
                "workers": 2,
                "queries_per_worker": 3,
                "warmup_queries": 1,
                "pool_size": 1,
                "repetitions": 1,
            },
            seed=0,
        ),
    }
    for name, frame in runs.items():
        patterns = declared_cases(DEFAULT, "database", name)
        written = set(frame["case"])  # the job's own rows included
        assert written and all(any(fnmatch.fnmatchcase(c, p) for p in patterns) for c in written)


def test_a_missing_dataset_mirror_is_a_config_error_naming_the_key(tmp_path):
    from forgebench.workflow import check_dataset_mirror

    config = _checked(_with(datasets__mirror="no/such/mirror"))
    with pytest.raises(ForgebenchError, match=r"'datasets\.mirror': 'no/such/mirror' is not a f"):
        check_dataset_mirror(config, tmp_path)
    config["datasets"]["mirror"] = None
    with pytest.raises(ForgebenchError, match=r"'datasets\.mirror': null and datasets\.allow_o"):
        check_dataset_mirror(config, tmp_path)
    config["datasets"]["mirror"] = str(tmp_path)  # a folder, but without the files
    with pytest.raises(ForgebenchError, match=r"lacks files this run reads.*humaneval \(human"):
        check_dataset_mirror(config, tmp_path)
    config["datasets"]["allow_online"] = True  # missing files are downloaded
    check_dataset_mirror(config, tmp_path)
    check_dataset_mirror(
        _checked(_with(datasets__mirror="../shared/datasets")), SCHEMA_PATH.parents[1]
    )


def test_no_mirror_is_needed_when_nothing_reads_a_dataset(tmp_path):
    from forgebench.workflow import check_dataset_mirror, needed_datasets

    only = load_yaml(SCHEMA_PATH.parent / "eval-only.yaml")
    off = {"enabled": False}
    layer = {"evaluation": off, "evomerge": off, "datasets": {"mirror": None}}
    config = _checked(_overlay(only, layer))
    assert needed_datasets(config) == []
    check_dataset_mirror(config, tmp_path)


def test_an_overlay_yaml_error_names_the_file_and_line(tmp_path):
    """Snakemake reads --configfile itself and names neither; `python -m forgebench.config`
    (the README's troubleshooting) checks the same files as the workflow does."""
    bad = tmp_path / "mine.yaml"
    bad.write_text("evaluation:\n  models: [cognate\n  suites: [logic]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "forgebench.config", str(bad)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert f'in "{bad}", line 3' in proc.stderr, proc.stderr
    good = tmp_path / "typo.yaml"
    comparison = {**DEFAULT["comparisons"][2], "candidate": "sqlite_joim"}
    good.write_text(yaml.safe_dump({"comparisons": [comparison]}))
    proc = subprocess.run(
        [sys.executable, "-m", "forgebench.config", str(good)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "'comparisons.0.candidate'" in proc.stderr, proc.stderr


@pytest.mark.workflow
@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ({"datasets": {"mirror": "no/such/mirror"}}, "'datasets.mirror': 'no/such/mirror'"),
        (
            {"comparisons": [{**DEFAULT["comparisons"][2], "candidate": "sqlite_joim"}]},
            "'comparisons.0.candidate': no case of database/n_plus_one",
        ),
        (
            {
                "models": {"mine": {"source": "path", "path": "no/such/model"}},
                "evaluation": {"models": ["cognate", "mine"]},
            },
            "'models.mine.path': 'no/such/model' is not a directory",
        ),
    ],
    ids=["mirror", "case", "model path"],
)
def test_snakemake_dry_run_stops_at_the_key_before_any_job(tmp_path, repo, overlay, message):
    """Under --directory elsewhere, a dry run stops at parse time naming the key; relative
    paths are taken from the repository root (the mirror's default resolves there)."""
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--snakefile",
         str(repo / "Snakefile"), "--directory", str(tmp_path), "--configfile",
         str(repo / "config" / "config.yaml"), str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in out, out[-2000:]
    assert "MissingInputException" not in out
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_a_path_model_is_found_from_the_repository_root_under_directory(tmp_path, repo):
    """``path: tests`` exists under the repository root, not under --directory: no error."""
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump({"models": {"mine": {"source": "path", "path": "tests"}},
                                    "evaluation": {"models": ["cognate", "mine"]}}))  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--snakefile",
         str(repo / "Snakefile"), "--directory", str(tmp_path), "--configfile",
         str(repo / "config" / "config.yaml"), str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-2000:]
    assert "models.mine.path" not in out


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (("evaluation", "suites"), ["logic", "codin"], "evaluation.suites.1"),
        (
            ("suites", "compression", "evaluate_suites"),
            ["logi"],
            "suites.compression.evaluate_suites.0",
        ),
        (("evomerge", "fitness_suite"), "logi", "evomerge.fitness_suite"),
    ],
    ids=["evaluation", "compression", "evomerge fitness"],
)
def test_a_suite_without_its_file_names_the_key(path, value, key):
    """Suites are files (suites/<name>.yaml), whatever names the schema lists: a name with
    no file is a config error at its key, not a failed evaluation job."""
    config = _checked(copy.deepcopy(DEFAULT))
    node = config
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(ForgebenchError, match=rf"config key '{re.escape(key)}': suite '"):
        check_references(config)
