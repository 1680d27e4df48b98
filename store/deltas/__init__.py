"""Numbered schema deltas (data files; see store/schema.py)."""
