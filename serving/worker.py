"""What a server process imports to build the app: `serving.app`, with the cyclic GC paused.

Importing the app loads ~2,700 modules (the MLflow client, scikit-learn and SciPy for the
model, pandas and pandera for the features), allocating millions of objects that stay
alive. CPython's cyclic garbage collector runs every few hundred allocations and, as the
heap grows, repeatedly walks all of it (about 690 collections, 5 of them full, per
import), finding nothing to free. Pausing it for the import, and only for the import, cuts
that work from every worker's start-up. `python -m serving` imports the app from here,
and uvicorn's workers build it from `serving.worker:create_app`.
"""

from __future__ import annotations

import gc

_collecting = gc.isenabled()
gc.disable()
try:
    from serving.app import create_app
finally:
    if _collecting:
        gc.enable()

__all__ = ["create_app"]
