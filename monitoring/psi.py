"""Population stability index (PSI) of one numeric column.

    PSI = sum_i (c_i - r_i) * ln(c_i / r_i)

where r_i and c_i are the shares of reference and current values in bin i.
It is symmetric, zero for identical histograms and grows with the shift; the
usual reading is < 0.1 stable, 0.1-0.2 moderate, >= 0.2 significant.

Bins come from the reference only, so a day's value does not depend on what
else arrived that day:
- a column with at most `bins` distinct reference values (counts, flags, a
  constant column) gets one bin per value plus one bin for anything else, so
  a constant reference column still registers any departure from its value;
- otherwise bins are reference quantiles (equal reference mass per bin, edges
  deduplicated for heavy ties), with the outer bins open-ended so current
  values outside the reference range are counted, not dropped.

Empty bins would make the logarithm infinite; shares are floored at `eps`
before the formula (the same convention as common PSI implementations), so a
bin seen only on one side adds a large but finite amount.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_EPS = 1e-4


def _clean(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype="float64").ravel()
    array = array[np.isfinite(array)]
    if array.size == 0:
        raise ValueError(f"psi needs at least one finite {name} value, got none")
    return array


def _bin_counts(
    reference: np.ndarray, current: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    distinct = np.unique(reference)
    if distinct.size <= bins:
        ref_idx = np.searchsorted(distinct, reference)
        cur_pos = np.searchsorted(distinct, current)
        in_range = cur_pos < distinct.size
        known = np.zeros(current.size, dtype=bool)
        known[in_range] = distinct[cur_pos[in_range]] == current[in_range]
        cur_idx = np.where(known, cur_pos, distinct.size)  # last bin: values unseen in reference
        n_bins = distinct.size + 1
    else:
        quantiles = np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1])
        edges = np.unique(quantiles)
        ref_idx = np.searchsorted(edges, reference, side="right")
        cur_idx = np.searchsorted(edges, current, side="right")
        n_bins = edges.size + 1
    return (
        np.bincount(ref_idx, minlength=n_bins).astype("float64"),
        np.bincount(cur_idx, minlength=n_bins).astype("float64"),
    )


def psi(
    reference: Sequence[float] | np.ndarray,
    current: Sequence[float] | np.ndarray,
    bins: int = 10,
    eps: float = DEFAULT_EPS,
) -> float:
    """PSI of `current` against `reference` (NaN/inf ignored); see the module docstring."""
    if bins < 2:
        raise ValueError(f"psi needs bins >= 2, got {bins}")
    if eps <= 0:
        raise ValueError(f"psi needs eps > 0, got {eps}")
    ref = _clean(reference, "reference")
    cur = _clean(current, "current")
    ref_counts, cur_counts = _bin_counts(ref, cur, bins)
    ref_share = np.maximum(ref_counts / ref_counts.sum(), eps)
    cur_share = np.maximum(cur_counts / cur_counts.sum(), eps)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))
