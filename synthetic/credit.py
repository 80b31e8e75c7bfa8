"""Seeded synthetic credit-card clients with the UCI file's columns, for offline runs and tests.

The rows have the layout of `uci_credit_card.csv.gz` (`ID`, `LIMIT_BAL`, ...,
`PAY_0`, `PAY_2`..`PAY_6`, `BILL_AMT1..6`, `PAY_AMT1..6`,
`default.payment.next.month`), so they go through the same `credit` source
mapping as the real file. A latent risk score drives the repayment delays,
the utilisation, the share of the bill paid and the default, so a model has
something real to learn. The undocumented codes the real data holds
(EDUCATION 0/5/6, MARRIAGE 0, PAY -2/0) occur here too.

`shift` (0..1) moves the population towards young clients with small limits,
high utilisation and more delays: the knob drift tests turn.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

LABEL_COLUMN = "default.payment.next.month"
STATUS_COLUMNS = ("PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6")
BILL_COLUMNS = tuple(f"BILL_AMT{m}" for m in range(1, 7))
PAY_AMT_COLUMNS = tuple(f"PAY_AMT{m}" for m in range(1, 7))
COLUMNS = (
    "ID",
    "LIMIT_BAL",
    "SEX",
    "EDUCATION",
    "MARRIAGE",
    "AGE",
    *STATUS_COLUMNS,
    *BILL_COLUMNS,
    *PAY_AMT_COLUMNS,
    LABEL_COLUMN,
)
LIMIT_STEPS = np.array([10, 20, 30, 50, 80, 100, 150, 200, 300, 500, 700, 1000]) * 1000.0


def generate(n: int = 2000, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    """`n` synthetic clients in the UCI layout; same `seed` and `shift`, same rows."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= shift <= 1.0:
        raise ValueError(f"shift must lie in [0, 1], got {shift}")
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(35 - 10 * shift, 9 - 4 * shift, n), 21, 79).round()
    limit_weights = np.linspace(1.0, 0.2, len(LIMIT_STEPS)) ** (1 + 3 * shift)
    limit = rng.choice(LIMIT_STEPS, size=n, p=limit_weights / limit_weights.sum())
    risk = rng.normal(0, 1, n) - 0.6 * np.log(limit / 100_000) + 0.02 * (35 - age) + 1.5 * shift
    education = rng.choice(
        [1, 2, 3, 4, 0, 5, 6], size=n, p=[0.35, 0.46, 0.16, 0.005, 0.005, 0.015, 0.005]
    )
    marriage = rng.choice([1, 2, 3, 0], size=n, p=[0.45, 0.53, 0.01, 0.01])
    sex = rng.choice([1, 2], size=n, p=[0.4, 0.6])

    status = np.empty((n, 6), dtype="int64")
    base = rng.choice([-2, -1, 0], size=n, p=[0.15, 0.2, 0.65])
    for month in range(6):
        delayed = rng.random(n) < 1 / (1 + np.exp(-(risk - 1.5)))
        months = np.clip(rng.poisson(np.clip(1 + risk, 0.5, 4), n), 1, 8)
        status[:, month] = np.where(delayed, months, base)

    usage = np.clip(1 / (1 + np.exp(-(risk + rng.normal(0, 0.7, n)))) * 1.1, 0, 1.3)
    bills = np.empty((n, 6))
    payments = np.empty((n, 6))
    for month in range(6):
        bills[:, month] = np.round(limit * usage * rng.uniform(0.85, 1.05, n), 0)
        no_use = status[:, month] == -2
        bills[no_use, month] = 0.0
    credit_balance = rng.random(n) < 0.04
    bills[credit_balance, 5] = -np.round(rng.uniform(10, 3000, credit_balance.sum()))
    share = np.clip(rng.beta(2, 6, n) * np.exp(-0.6 * risk), 0, 1.2)
    for month in range(6):
        owed = np.clip(bills[:, min(month + 1, 5)], 0, None)
        payments[:, month] = np.round(owed * share * rng.uniform(0.7, 1.3, n), 0)

    default_p = 1 / (1 + np.exp(-(1.3 * risk - 1.4 + 0.4 * (status[:, 0] >= 2))))
    label = (rng.random(n) < default_p).astype("int64")
    frame = pd.DataFrame(
        {
            "ID": np.arange(1, n + 1, dtype="int64"),
            "LIMIT_BAL": limit,
            "SEX": sex.astype("int64"),
            "EDUCATION": education.astype("int64"),
            "MARRIAGE": marriage.astype("int64"),
            "AGE": age.astype("int64"),
            **{c: status[:, i] for i, c in enumerate(STATUS_COLUMNS)},
            **{c: bills[:, i] for i, c in enumerate(BILL_COLUMNS)},
            **{c: payments[:, i] for i, c in enumerate(PAY_AMT_COLUMNS)},
            LABEL_COLUMN: label,
        }
    )
    return frame[list(COLUMNS)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write synthetic credit clients (UCI layout).")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shift", type=float, default=0.0)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    generate(args.n, args.seed, args.shift).to_csv(args.out, index=False)
    print(f"wrote {args.n} clients to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
