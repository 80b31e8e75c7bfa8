"""Reason codes: which features pushed a tabular model's score up, per prediction."""
