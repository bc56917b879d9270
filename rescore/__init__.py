"""Lattice rescoring with AFP language models."""
