"""Models: the cognate reference model built locally, hub and local-path models, all put
in Hugging Face format at results/models/<name>/ (forgebench.models.materialize)."""

from forgebench.models.architecture import (
    COGNATE_ARCHITECTURE,
    TARGET_PARAMS,
    Architecture,
    build_model,
)
from forgebench.models.files import validate_model_dir
from forgebench.models.materialize import SOURCES, materialize

__all__ = [
    "COGNATE_ARCHITECTURE",
    "SOURCES",
    "TARGET_PARAMS",
    "Architecture",
    "build_model",
    "materialize",
    "validate_model_dir",
]
