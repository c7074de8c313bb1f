"""Metrics: thin, tested wrappers over scikit-learn / torchmetrics."""
