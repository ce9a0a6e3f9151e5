"""Network benchmarks: TCP echo round trips on loopback and a sockperf cross-check."""
