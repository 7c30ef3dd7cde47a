"""Benchmarks that print numbers (run them as scripts)."""
