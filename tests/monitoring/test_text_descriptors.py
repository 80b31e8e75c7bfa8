from __future__ import annotations

import pandas as pd
import pytest

from features.reviews import build_features
from monitoring.descriptors import LEXICON_POLARITY, OOV_SHARE, add_text_descriptors
from synthetic.reviews import generate_reviews


def _clean(n: int, seed: int, domain: str) -> pd.DataFrame:
    return build_features(generate_reviews(n, seed=seed, domain=domain))[["text_clean"]]


def test_cross_fitted_oov_share_matches_between_reference_and_same_domain() -> None:
    reference = _clean(1000, 0, "movies")
    same = _clean(400, 1, "movies")
    ref_out, cur_out = add_text_descriptors(reference, same)
    # Without cross-fitting the reference would score 0 against its own vocabulary.
    assert ref_out[OOV_SHARE].mean() == pytest.approx(cur_out[OOV_SHARE].mean(), abs=0.02)
    _, other = add_text_descriptors(reference, _clean(400, 2, "products"))
    assert other[OOV_SHARE].mean() > cur_out[OOV_SHARE].mean() + 0.1


def test_lexicon_polarity_follows_the_words() -> None:
    reference = pd.DataFrame({"text_clean": ["great fun", "plain text"] * 5})
    current = pd.DataFrame({"text_clean": ["great, great and awful", "terrible", "", "neutral"]})
    _, out = add_text_descriptors(reference, current)
    assert out[LEXICON_POLARITY].tolist() == pytest.approx([1 / 3, -1.0, 0.0, 0.0])
    assert out.loc[2, OOV_SHARE] == 0.0  # empty review: no tokens, no division by zero


def test_inputs_are_not_modified() -> None:
    reference = _clean(50, 3, "movies")
    current = _clean(20, 4, "movies")
    add_text_descriptors(reference, current)
    assert list(reference.columns) == ["text_clean"]
    assert list(current.columns) == ["text_clean"]
