"""System benchmarks: interpreter import time and parallel test execution.

Kept empty on purpose: ``python -m forgebench.system.eager_cli`` imports this package
first, and anything imported here would be charged to the eager CLI alone.
"""
