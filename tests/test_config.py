"""A bad config fails before any job starts, with a message naming the key."""

from __future__ import annotations

import copy
import json
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
