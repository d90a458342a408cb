"""Evaluation metrics, built from the YAML `metric` section by type (registered as METRIC)."""
from mindformers.core.metric.em_f1 import EmF1Metric
from mindformers.core.metric.perplexity import PerplexityMetric

__all__ = ["EmF1Metric", "PerplexityMetric"]
