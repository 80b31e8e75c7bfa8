from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.psi import psi


def test_identical_samples_give_zero() -> None:
    values = np.random.default_rng(0).normal(size=2000)
    assert psi(values, values) == pytest.approx(0.0, abs=1e-12)


def test_two_samples_of_one_distribution_stay_below_the_stable_band() -> None:
    rng = np.random.default_rng(1)
    assert psi(rng.normal(size=5000), rng.normal(size=1000)) < 0.05


def test_shifted_distribution_is_large() -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(size=5000)
    moderate = psi(reference, rng.normal(0.5, 1.0, size=2000))
    large = psi(reference, rng.normal(1.5, 1.0, size=2000))
    assert 0.1 < moderate < large
    assert large > 1.0


def test_current_values_outside_the_reference_range_are_counted() -> None:
    reference = np.linspace(0.0, 1.0, 1000)
    assert psi(reference, np.full(500, 5.0)) > 5.0


def test_constant_reference_column_registers_any_departure() -> None:
    reference = np.zeros(1000)
    assert psi(reference, np.zeros(300)) == pytest.approx(0.0, abs=1e-12)
    some_ones = np.r_[np.zeros(210), np.ones(90)]
    assert psi(reference, some_ones) > 0.2


def test_discrete_columns_use_one_bin_per_value() -> None:
    rng = np.random.default_rng(3)
    reference = rng.poisson(1.0, size=5000)
    same = rng.poisson(1.0, size=1000)
    more = rng.poisson(3.0, size=1000)
    assert psi(reference, same) < 0.05
    assert psi(reference, more) > 0.5


def test_nan_values_are_ignored() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(size=1000)
    current = rng.normal(size=500)
    with_nan = np.r_[current, [np.nan] * 50]
    assert psi(reference, with_nan) == pytest.approx(psi(reference, current))


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="bins"):
        psi([1.0, 2.0], [1.0], bins=1)
    with pytest.raises(ValueError, match="current"):
        psi([1.0, 2.0], [np.nan])


@settings(max_examples=60, deadline=None)
@given(
    reference=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200),
    current=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200),
    bins=st.integers(2, 20),
)
def test_psi_is_finite_and_never_negative(
    reference: list[float], current: list[float], bins: int
) -> None:
    value = psi(reference, current, bins=bins)
    assert np.isfinite(value)
    assert value >= 0.0
