"""Evaluation: metrics, dataset protocols, flow end-point error and the classical baseline."""
