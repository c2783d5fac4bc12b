"""Evaluation: image metrics, motion metrics, and the evaluate() driver that writes metrics.json."""
