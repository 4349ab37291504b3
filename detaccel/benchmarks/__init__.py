"""Benchmarks of detaccel's components against each other on a dataset split."""
