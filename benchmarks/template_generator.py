"""The template generator: speed, reachable space per category, and a grammar check.

Prints queries per second (drawing through `TemplateGenerator.queries`, Kiwi conjugation
included), the number of distinct combinations each category's lexicon can produce and how many
distinct queries a large draw actually reaches after the pipeline's exact-dedup key, and a grammar
check: sampled queries run through Kiwi's analyser, counting unknown morphemes (tag UN) and loose
jamo; with --show, the first 50 samples are printed for reading by hand.

    python benchmarks/template_generator.py [--samples 200] [--draw 3000] [--show]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.dedup.keys import dedup_key  # noqa: E402
from pipeline.korean import kiwi  # noqa: E402
from pipeline.taxonomy import load_taxonomy  # noqa: E402
from pipeline.template_queries import TemplateGenerator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--draw", type=int, default=3000, help="queries drawn per category")
    parser.add_argument("--show", action="store_true")
    args = parser.parse_args()
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    generator = TemplateGenerator(taxonomy, ROOT / "prompts")
    generator.query(taxonomy.category_ids[0], 0)  # load Kiwi outside the timing

    print(f"{'category':<26} {'space':>8} {'reached':>8}  (of {args.draw} drawn)")
    started, drawn = time.perf_counter(), 0
    for category in taxonomy.category_ids:
        queries = generator.queries(category, seed=1, count=args.draw)
        drawn += len(queries)
        reached = len({dedup_key(text) for text in queries})
        print(f"{category:<26} {generator.space(category):>8} {reached:>8}")
    elapsed = time.perf_counter() - started
    print(f"speed: {drawn / elapsed:.0f} queries/s ({drawn} in {elapsed:.1f} s, one core)")

    unknown = jamo = 0
    samples = [
        generator.query(taxonomy.category_ids[i % len(taxonomy.category_ids)], seed=10_000 + i)
        for i in range(args.samples)
    ]
    for text in samples:
        tokens = kiwi().tokenize(text)
        unknown += any(token.tag == "UN" for token in tokens)
        jamo += any("\u3131" <= char <= "\u318e" for char in text)
    print(
        f"grammar check: {args.samples} samples, {unknown} with unknown morphemes, "
        f"{jamo} with loose jamo"
    )
    if args.show:
        for text in samples[:50]:
            print(" ", text)


if __name__ == "__main__":
    main()
