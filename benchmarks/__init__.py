"""Benchmarks: scripts that measure speed and fidelity and write JSON + Markdown."""
