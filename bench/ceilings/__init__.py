"""Ceilings: the cheapest servers doing the same work, one process each."""
