"""Thin entry points for `ray job submit`: one per stage (ingest, stats, features, train), each `--config <yaml>`."""
