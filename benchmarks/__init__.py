"""Benchmarks: each script compares vlaflow with the real alternative on the same data (see README.md)."""
