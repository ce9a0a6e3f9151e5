"""Rule entry point: prepare one evaluation dataset (see forgebench.datasets)."""

import logging
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
logging.getLogger().addHandler(_handler)
logging.getLogger().setLevel(logging.INFO)

from forgebench.datasets import prepare  # noqa: E402

section = snakemake.params.datasets
mirror = section.get("mirror", "../shared/datasets")
prepare(
    snakemake.wildcards.dataset,
    mirror=Path(mirror) if mirror is not None else None,
    allow_online=bool(section.get("allow_online", False)),
    out_dir=Path(snakemake.output[0]),
    timeout_s=float(section.get("download_timeout_s", 60.0)),
    sources=section.get("sources") or {},
)
