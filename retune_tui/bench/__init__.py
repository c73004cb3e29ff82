"""Benchmarks: numbers printed as ratios and written as JSON, never asserted in tests."""
