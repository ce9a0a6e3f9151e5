"""Evaluation datasets: fetched or read from a mirror, checked by sha256, written as Parquet
in the Hugging Face schema that lm-eval's built-in tasks read."""

from forgebench.datasets.catalog import CATALOG, DATASET_NAMES, DatasetSpec, SourceFile, get_spec
from forgebench.datasets.fetch import load_manifest, prepare

__all__ = [
    "CATALOG",
    "DATASET_NAMES",
    "DatasetSpec",
    "SourceFile",
    "get_spec",
    "load_manifest",
    "prepare",
]
