"""Benchmarks of forgebench's own machinery, so its measuring costs are measured too."""
