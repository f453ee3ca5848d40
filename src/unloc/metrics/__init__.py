"""Evaluation metrics. ``METRICS`` maps a metric name to a batched function of a model."""

from unloc.metrics.es import extraction_strength, mean_es
from unloc.metrics.generation import greedy_generate
from unloc.metrics.tofu import (
    answer_probability,
    forget_quality,
    forget_truth_ratios,
    log10_fq,
    model_utility,
    rouge_l_recall,
    truth_ratio_forget,
    truth_ratio_utility,
    truth_ratios,
    utility_parts,
)

METRICS = {
    "es": mean_es,
    "truth_ratio": truth_ratios,
    "truth_ratio_forget": truth_ratio_forget,
    "truth_ratio_utility": truth_ratio_utility,
    "probability": answer_probability,
    "rouge_l_recall": rouge_l_recall,
    "forget_quality": forget_quality,
    "log10_forget_quality": log10_fq,
    "model_utility": model_utility,
    "utility_parts": utility_parts,
    "forget_truth_ratios": forget_truth_ratios,
}

__all__ = ["METRICS", "extraction_strength", "greedy_generate", "mean_es"]
