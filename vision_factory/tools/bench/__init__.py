"""Benchmarks: scripts that measure and print tables; never timed assertions in tests."""
