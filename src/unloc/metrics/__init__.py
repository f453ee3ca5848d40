"""Evaluation metrics. ``METRICS`` maps a metric name to a batched function of a model."""

from unloc.metrics.es import extraction_strength, mean_es

METRICS = {"es": mean_es}

__all__ = ["METRICS", "extraction_strength", "mean_es"]
