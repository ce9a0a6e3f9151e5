"""Training benchmarks: optimisation tricks measured on small models (forgebench.training)."""
