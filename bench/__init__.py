"""Benchmarks: figures measured on real data, printed and written under bench/results/."""
