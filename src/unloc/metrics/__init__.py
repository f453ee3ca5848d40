"""Evaluation metrics: ES (es.py), greedy generation (generation.py), the TOFU metrics
(tofu.py) and the curve metrics a mixing sweep reports at every point (curve.py,
``CURVE_METRICS``). Nothing here imports training code."""
