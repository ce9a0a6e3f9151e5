"""Model evaluation: lm-eval tasks over the prepared datasets, suites, sandboxed code scoring."""
