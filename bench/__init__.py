"""Benchmarks (`make bench`): each module prints figures recorded in BENCHMARKS.md."""
