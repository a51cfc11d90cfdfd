"""Benchmark scripts (print figures; never asserted in tests)."""
