"""Known answers for the code scorer: reference solutions pass, broken ones fail.

Reads HumanEval and MBPP straight from the shared dataset mirror (never copied). Candidates and
tests are what lm-eval's tasks hand the metric (HumanEval: prompt + completion, and the tests
ending with ``check(entry_point)``); the sandbox runs the tests in a judge process that calls
into the candidate's. MBPP task 367 needs its ``test_setup_code``, which lm-eval's task
drops (so lm-eval scores even the reference 0 there); here it is included, as the dataset
defines the test. The timeout is 10 s of CPU, not the 3 s default: task 123's reference needs
about 2.5 s on this class of machine and a known-answer test must not hinge on that margin.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re

import pytest
from conftest import SHARED_DATASETS

from forgebench.evaluation.code_exec import build_program, configure, run_programs, sandbox_uids
from forgebench.evaluation.code_exec import sandbox as sandbox_module

SAMPLE = 20


@pytest.fixture(scope="module", autouse=True)
def _sandbox():
    if os.geteuid() != 0:
        pytest.skip("the sandbox needs root (CI runs as root)")
    configure(timeout_s=10.0)
    yield
    configure()


def humaneval() -> list[dict]:
    path = SHARED_DATASETS / "humaneval" / "HumanEval.jsonl.gz"
    if not path.exists():
        pytest.skip(f"dataset mirror missing: {path}")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def mbpp_test() -> list[dict]:
    path = SHARED_DATASETS / "mbpp" / "mbpp.jsonl"
    if not path.exists():
        pytest.skip(f"dataset mirror missing: {path}")
    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return [r for r in rows if 11 <= r["task_id"] <= 510]


def he_program(doc: dict, completion: str) -> str:
    return build_program(doc["prompt"] + completion, f"{doc['test']}\ncheck({doc['entry_point']})")


def he_broken(doc: dict) -> str:
    """The canonical solution with its body replaced by ``return None``."""
    return he_program(doc, "    return None\n")


def mbpp_program(doc: dict, code: str) -> str:
    tests = "\n".join(doc["test_list"])
    if doc["test_setup_code"].strip():
        tests = doc["test_setup_code"] + "\n" + tests
    return build_program(code, tests)


def mbpp_broken(doc: dict) -> str:
    """The reference, then every function it defines redefined to return None."""
    names = re.findall(r"^def (\w+)\s*\(", doc["code"], re.M)
    stubs = "".join(f"\ndef {n}(*args, **kwargs):\n    return None\n" for n in names)
    return mbpp_program(doc, doc["code"] + "\n" + stubs)


def check(programs: dict[str, str], expect_pass: bool) -> None:
    results = run_programs(list(programs.values()))
    wrong = {k: r.status for k, r in zip(programs, results, strict=True) if r.passed != expect_pass}
    assert wrong == {}, f"{len(wrong)} of {len(programs)} scored wrongly: {wrong}"
    for uid in sandbox_uids():
        assert sandbox_module.pids_of_uid(uid) == []


def test_counts():
    assert len(humaneval()) == 164
    assert len(mbpp_test()) == 500


def test_sample_references_pass_and_broken_fail():
    rng = random.Random(4)
    he = rng.sample(humaneval(), SAMPLE)
    mb = rng.sample(mbpp_test(), SAMPLE)
    check({d["task_id"]: he_program(d, d["canonical_solution"]) for d in he}, True)
    check({d["task_id"]: mbpp_program(d, d["code"]) for d in mb}, True)
    check({d["task_id"]: he_broken(d) for d in he}, False)
    check({d["task_id"]: mbpp_broken(d) for d in mb}, False)


def test_all_humaneval_canonical_pass_and_broken_fail():
    docs = humaneval()
    check({d["task_id"]: he_program(d, d["canonical_solution"]) for d in docs}, True)
    check({d["task_id"]: he_broken(d) for d in docs}, False)


def test_all_mbpp_references_pass_and_broken_fail():
    docs = mbpp_test()
    check({d["task_id"]: mbpp_program(d, d["code"]) for d in docs}, True)
    check({d["task_id"]: mbpp_broken(d) for d in docs}, False)
