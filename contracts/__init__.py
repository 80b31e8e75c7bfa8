"""Data contracts: column names, dtypes, Pandera schemas, API models, versions."""
