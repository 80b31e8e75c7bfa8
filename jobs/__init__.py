"""Batch jobs that run outside the web process (Spark feature jobs live in `jobs.spark`)."""
