"""The template generator: speed, reachable space per category, and a grammar check.

Prints queries per second (drawing through `TemplateGenerator.queries`, Kiwi conjugation
included), the number of distinct combinations each category's lexicon can produce and how many
distinct queries a large draw actually reaches after the pipeline's exact-dedup key, and a grammar
check: sampled queries run through Kiwi's analyser, counting unknown morphemes (tag UN) and loose
jamo; with --show, the first 50 samples are printed for reading by hand. With --dedup N, N
queries per category also go through the pipeline's whole dedup stage (exact, fuzzy, e5
embedding, with the taxonomy's thresholds and exemplars) and the keepers are counted: the
distinct queries a category can really contribute to a corpus.

    python benchmarks/template_generator.py [--samples 200] [--draw 3000] [--show] [--dedup 1500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from pipeline.dedup.keys import dedup_key  # noqa: E402
from pipeline.embed import VectorCache, make_embedder  # noqa: E402
from pipeline.korean import kiwi  # noqa: E402
from pipeline.stages import dedup  # noqa: E402
from pipeline.taxonomy import Taxonomy, load_taxonomy  # noqa: E402
from pipeline.template_queries import TemplateGenerator  # noqa: E402
from pipeline.text import row_id  # noqa: E402

#: queries per planned call (the taxonomy's items_per_call)
CALL_SIZE = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--draw", type=int, default=3000, help="queries drawn per category")
    parser.add_argument("--show", action="store_true")
    parser.add_argument("--dedup", type=int, default=0, help="queries per category to dedup")
    args = parser.parse_args()
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    generator = TemplateGenerator(taxonomy, ROOT / "prompts")
    generator.query(taxonomy.category_ids[0], 0)  # load Kiwi outside the timing

    print(f"{'category':<26} {'space':>8} {'reached':>8}  (of {args.draw} drawn)")
    started, drawn = time.perf_counter(), 0
    for category in taxonomy.category_ids:
        queries = _deal(generator, category, args.draw)
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
    # jamo and unknown morphemes are what slang, typo and emoticon registers are for
    samples = [s.text for s in samples if s.register in ("banmal", "jondaetmal", "written")]
    for text in samples:
        tokens = kiwi().tokenize(text)
        unknown += any(token.tag == "UN" for token in tokens)
        jamo += any("\u3131" <= char <= "\u318e" for char in text)
    print(
        f"grammar check: {len(samples)} samples in the base registers, {unknown} with unknown "
        "morphemes, "
        f"{jamo} with loose jamo"
    )
    if args.show:
        for text in samples[:50]:
            print(" ", text)
    if args.dedup:
        _dedup_survivors(taxonomy, generator, args.dedup)


def _deal(generator: TemplateGenerator, category: str, count: int) -> list[str]:
    """`count` queries of one category, dealt as a run deals them: calls of 8 in order."""
    texts: list[str] = []
    for call in range(-(-count // CALL_SIZE)):
        texts += [item.text for item in generator.queries(category, call, seed=call,
                                                           count=CALL_SIZE)]
    return texts[:count]


def _dedup_survivors(taxonomy: Taxonomy, generator: TemplateGenerator, count: int) -> None:
    """Keepers of the real dedup stage among `count` fresh queries per category."""
    with tempfile.TemporaryDirectory() as scratch:
        vectors = VectorCache(Path(scratch), make_embedder(taxonomy.dedup.embedder))
        reference = dedup.exemplar_reference(taxonomy)
        print(f"{'category':<26} {'kept':>6}  (of {count} drawn, after exact+fuzzy+embedding)")
        for category in taxonomy.category_ids:
            texts = _deal(generator, category, count)
            rows = pl.DataFrame(
                {
                    "id": [row_id(category, text) for text in texts],
                    "category": [category] * len(texts),
                    "text": texts,
                    "source": ["template"] * len(texts),
                    "rejected_by": [None] * len(texts),
                    "reject_reason": [None] * len(texts),
                },
                schema_overrides={"rejected_by": pl.String, "reject_reason": pl.String},
            )
            kept = dedup.run(rows, taxonomy.dedup, reference, vectors)
            print(f"{category:<26} {kept['rejected_by'].is_null().sum():>6}")
        vectors.close()


if __name__ == "__main__":
    main()
