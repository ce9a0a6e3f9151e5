"""One set of pins: constraints.txt, pyproject's dependencies and envs/*.yaml agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[_name(name)] = version
    return pins


def test_every_direct_dependency_is_pinned():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    direct = project["dependencies"] + project["optional-dependencies"]["test"]
    pins = _pins()
    assert sorted(_name(r) for r in direct if _name(r) not in pins) == []
    assert pins["torch"] == "2.13.0"  # the CPU build here; a looser pin pulls CUDA wheels


def test_conda_envs_carry_the_same_pins():
    pins = _pins()
    for env in sorted((REPO / "envs").glob("*.yaml")):
        deps = yaml.safe_load(env.read_text())["dependencies"]
        pip = next(d["pip"] for d in deps if isinstance(d, dict))
        for requirement in pip:
            if requirement.startswith("-e"):
                continue
            name, _, version = requirement.partition("==")
            assert pins.get(_name(name)) == version, f"{env.name}: {requirement} vs constraints"


def test_every_rule_declares_threads_and_resources():
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        for rule in re.split(r"\n(?=rule |checkpoint )", text)[1:]:
            name = rule.split(":")[0]
            for directive in ("threads:", "resources:", "mem_mb=", "runtime=", "log:"):
                assert directive in rule, f"{smk.name} {name} lacks {directive}"
