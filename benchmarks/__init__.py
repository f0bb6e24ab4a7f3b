"""Reproducible benchmarks: one command per table, JSON results in benchmarks/results/."""
