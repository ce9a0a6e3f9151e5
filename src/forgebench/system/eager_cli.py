"""The ``forgebench`` CLI as it would be with every dependency imported at top level.

``forgebench.cli`` imports its heavy dependencies inside the commands, so ``--help`` and
argument errors answer at once. This module is the counterfactual that
``system/import_time`` times against it (cases ``cli_eager`` and ``cli_lazy``): it first
imports everything the CLI's commands import (directly and through the forgebench
modules they use; tests/test_import_time.py checks the list against cli.py), then hands
over to the very same ``forgebench.cli.main``, so both print byte-identical output and
differ only in what is imported before the parser runs.

Run ``python -m forgebench.system.eager_cli --help``.
"""

# ruff: noqa: F401  (every import below is there for its cost alone)
import sys

import jinja2  # forgebench.report
import matplotlib  # forgebench.plots
import numpy
import pandas  # cmd_run
import pyarrow  # forgebench.record
import pyarrow.parquet
import scipy.stats  # forgebench.stats
import snakemake.utils  # cli._load_config (validate)

import forgebench.analysis  # cmd_run
import forgebench.config  # cli._load_config
import forgebench.gate  # cmd_gate
import forgebench.history  # cmd_history, cmd_compare
import forgebench.report  # cmd_run, cmd_report; imports forgebench.plots
import forgebench.report.not_run  # cmd_report (the missing tables of a failed run)
import forgebench.run_archive  # cmd_history export/import
import forgebench.runner  # cmd_run
import forgebench.watch  # cmd_watch
import forgebench.workflow  # cli._load_config
from forgebench.cli import main

if __name__ == "__main__":
    sys.exit(main())
