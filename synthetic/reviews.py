"""Seeded synthetic labelled reviews for offline demos and fast tests.

Reviews are built from sentiment phrases and domain nouns, with the noise real
reviews have (HTML line breaks, shouting, repeated punctuation, negated
phrases, typos, entities). `domain` picks the topic vocabulary; `shift` (0..1)
mixes in the other domain's vocabulary and its own sentiment idioms, which is
the knob drift tests and demos turn.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

DOMAINS: dict[str, dict[str, list[str]]] = {
    "movies": {
        "nouns": [
            "film",
            "movie",
            "plot",
            "script",
            "cast",
            "director",
            "ending",
            "soundtrack",
            "performance",
            "screenplay",
            "sequel",
            "cinematography",
            "villain",
            "scene",
        ],
        "pos": [
            "a masterpiece",
            "brilliantly acted",
            "gripping from start to finish",
            "beautifully shot",
            "an instant classic",
            "moving and funny",
            "superb pacing",
        ],
        "neg": [
            "a total bore",
            "badly acted",
            "a waste of two hours",
            "painfully slow",
            "full of plot holes",
            "cheap and lazy",
            "laughably written",
        ],
    },
    "products": {
        "nouns": [
            "battery",
            "screen",
            "charger",
            "tablet",
            "device",
            "speaker",
            "remote",
            "case",
            "setup",
            "app",
            "warranty",
            "cable",
            "keyboard",
            "price",
        ],
        "pos": [
            "works perfectly",
            "great value for money",
            "easy to set up",
            "fast shipping and solid build",
            "exceeded my expectations",
            "my kids love it",
            "battery lasts for days",
        ],
        "neg": [
            "stopped working after a week",
            "cheap plastic",
            "returned it immediately",
            "battery dies in an hour",
            "customer service was useless",
            "keeps disconnecting",
            "broke on day two",
        ],
    },
}

POSITIVE = [
    "great",
    "excellent",
    "wonderful",
    "amazing",
    "loved",
    "fantastic",
    "enjoyable",
    "perfect",
    "brilliant",
    "impressive",
    "delightful",
    "recommend",
]
NEGATIVE = [
    "terrible",
    "awful",
    "boring",
    "worst",
    "hated",
    "disappointing",
    "poor",
    "horrible",
    "dull",
    "annoying",
    "mediocre",
    "regret",
]
FILLER = [
    "honestly",
    "overall",
    "i think",
    "to be fair",
    "in my opinion",
    "after all",
    "frankly",
    "anyway",
    "well",
    "basically",
]


def _sentence(rng: np.random.Generator, label: int, vocab: dict[str, list[str]]) -> str:
    noun = rng.choice(vocab["nouns"])
    flip = rng.random() < 0.12  # negated opposite word: "not terrible" in a positive review
    if flip:
        word = rng.choice(NEGATIVE if label == 1 else POSITIVE)
        core = f"the {noun} was not {word}"
    else:
        word = rng.choice(POSITIVE if label == 1 else NEGATIVE)
        core = f"the {noun} was {word}"
    if rng.random() < 0.45:
        core += ", " + rng.choice(vocab["pos"] if label == 1 else vocab["neg"])
    if rng.random() < 0.3:
        core = f"{rng.choice(FILLER)}, {core}"
    return core


def _review(rng: np.random.Generator, label: int, vocab: dict[str, list[str]]) -> str:
    n = int(rng.integers(2, 7))
    sentences = [_sentence(rng, label, vocab) for _ in range(n)]
    # Ambiguous noise: some sentences lean the other way, so the task is not trivial.
    if rng.random() < 0.35:
        sentences.insert(int(rng.integers(0, n)), _sentence(rng, 1 - label, vocab))
    parts = []
    for s in sentences:
        s = s[0].upper() + s[1:]
        end = "!" * int(rng.integers(1, 4)) if rng.random() < 0.2 else "."
        if rng.random() < 0.08:
            s = s.upper()
        parts.append(s + end)
    joiner = " <br /><br />" if rng.random() < 0.3 else " "
    text = joiner.join(parts)
    if rng.random() < 0.05:
        text = text.replace(" and ", " &amp; ")
    if rng.random() < 0.05:
        text = "  " + text + "\t"
    return text


def generate_reviews(
    n: int = 2000,
    seed: int = 0,
    domain: str = "movies",
    shift: float = 0.0,
    positive_share: float = 0.5,
    label_noise: float = 0.05,
) -> pd.DataFrame:
    """`n` labelled reviews as a frame with columns `text`, `label` (0/1).

    `shift` is the share of reviews drawn from the other domain's vocabulary;
    `label_noise` the share of labels flipped after the text is written (real
    labels are noisy too, so no model reaches 100%).
    """
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose one of {sorted(DOMAINS)}")
    if not 0.0 <= shift <= 1.0:
        raise ValueError(f"shift must be within [0, 1], got {shift}")
    other = next(d for d in DOMAINS if d != domain)
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < positive_share).astype("int64")
    shifted = rng.random(n) < shift
    texts = [
        _review(rng, int(label), DOMAINS[other if moved else domain])
        for label, moved in zip(labels, shifted, strict=True)
    ]
    flipped = rng.random(n) < label_noise
    labels = np.where(flipped, 1 - labels, labels).astype("int64")
    return pd.DataFrame({"text": texts, "label": labels})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write synthetic labelled reviews to CSV/Parquet.")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--domain", choices=sorted(DOMAINS), default="movies")
    parser.add_argument("--shift", type=float, default=0.0)
    parser.add_argument("--out", type=Path, required=True, help=".csv, .csv.gz or .parquet")
    args = parser.parse_args(argv)
    frame = generate_reviews(args.n, args.seed, args.domain, args.shift)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix == ".parquet":
        frame.to_parquet(args.out, index=False)
    else:
        frame.to_csv(args.out, index=False)
    print(f"wrote {len(frame)} reviews ({frame['label'].mean():.1%} positive) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
