"""Benchmarks: PowerBank against a bare baseline, measured in one run (``make bench``)."""
