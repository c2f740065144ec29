"""Benchmarks of pipeserve against bare ceilings (see bench/README.md); never part of the tests."""
