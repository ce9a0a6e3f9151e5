"""Offline, sandboxed execution of model-written code for HumanEval and MBPP, with pass@k.

lm-eval task YAMLs use ``humaneval_pass_at_k`` and ``mbpp_pass_at_1`` as metrics; see
``sandbox`` for the threat model and limits. Importing this package runs nothing.
"""

from forgebench.evaluation.code_exec.lm_eval_metrics import (
    humaneval_pass_at_k,
    mbpp_pass_at_1,
    prefetch,
)
from forgebench.evaluation.code_exec.passk import (
    ProblemScore,
    build_program,
    estimate_pass_at_k,
    pass_at_k,
    score_problems,
)
from forgebench.evaluation.code_exec.sandbox import (
    ExecResult,
    SandboxConfig,
    SandboxUnavailable,
    configure,
    current_config,
    run_program,
    run_programs,
    sandbox_uids,
)

__all__ = [
    "ExecResult",
    "ProblemScore",
    "SandboxConfig",
    "SandboxUnavailable",
    "build_program",
    "configure",
    "current_config",
    "estimate_pass_at_k",
    "humaneval_pass_at_k",
    "mbpp_pass_at_1",
    "pass_at_k",
    "prefetch",
    "run_program",
    "run_programs",
    "sandbox_uids",
    "score_problems",
]
