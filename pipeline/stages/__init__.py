"""Pipeline stages: each a function from a polars DataFrame (plus config and backends) to a
DataFrame with its own columns added. The runner owns I/O, checkpoints and progress."""
