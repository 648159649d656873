"""Throughput of the default offline run: `synth run` on the bundled local model.

Prints wall time, model calls, calls/s, generated rows/s, accepted items, the exported corpus's
split sizes and shortfalls, and the peak RSS of the run, for a fresh run of the shipped taxonomy.
Usage:

    python benchmarks/generate_local.py --n 200
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--taxonomy", type=Path, default=ROOT / "taxonomy.yaml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run"
        synth = str(Path(sys.executable).parent / "synth")
        started = time.perf_counter()
        subprocess.run(
            [synth, "run", "--taxonomy", str(args.taxonomy), "--n", str(args.n), "--out", str(out)],
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        manifest = json.loads((out / "run.json").read_text())
        calls = sum(stage.get("calls", 0) for stage in manifest["stages"].values())
        rows = pl.read_parquet(out / "round-*" / "generate" / "*.parquet").height
        accepted = sum(outcome["accepted"] for outcome in manifest["outcomes"])
        rounds = len(list(out.glob("round-*")))
        corpus = manifest.get("corpus", {})
        splits = "/".join(str(count) for count in corpus.get("by_split", {}).values())
        short = ",".join(entry["category"] for entry in corpus.get("short", [])) or "none"
    print(
        f"n={args.n} rounds={rounds} wall={wall:.1f}s calls={calls} "
        f"calls/s={calls / wall:.2f} rows={rows} rows/s={rows / wall:.2f} "
        f"accepted={accepted}/{args.n} corpus(train/validation/test)={splits} "
        f"examples={corpus.get('examples')} short={short} peak_rss={peak_mib:.0f}MiB"
    )


if __name__ == "__main__":
    main()
