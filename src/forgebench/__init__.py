"""forgebench: a reproducible benchmarking workflow for models and the systems around them."""

__version__ = "0.1.0"
