"""Hostile-server tests: misbehaving raw-socket servers against the public API (subprocess)."""
