"""Hostile-server tests: misbehaving raw-socket servers against the public API, run in a subprocess."""
