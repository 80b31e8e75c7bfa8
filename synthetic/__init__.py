"""Synthetic data of the project's own, for offline demos and fast tests."""

from synthetic.reviews import generate_reviews

__all__ = ["generate_reviews"]
