"""Benchmark suite for the CDS service (issue 8); run with ``python -m bench [--quick]``."""
