"""The local backend's tokens per second through the pipeline's client versus llama.cpp alone.

Both sides run the same rendered generation prompt with the same seeds on the bundled Gemma 3
270M, so they produce the same tokens; the difference is our overhead (request building, the
event loop, the thread hop, the call cache and event log on disk).

    python benchmarks/local_overhead.py [--calls 12] [--repeats 4]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.backends.base import Request  # noqa: E402
from pipeline.backends.local import LocalBackend  # noqa: E402
from pipeline.callcache import CallCache  # noqa: E402
from pipeline.events import EventLog  # noqa: E402
from pipeline.llm import CallStats, LLMClient  # noqa: E402
from pipeline.prompts import PromptLibrary, generation_variables  # noqa: E402
from pipeline.stages.generate import COMPLETION_STOP  # noqa: E402
from pipeline.taxonomy import load_taxonomy  # noqa: E402


def _prompt() -> str:
    taxonomy = load_taxonomy(ROOT / "taxonomy.yaml")
    prompts = PromptLibrary(ROOT / "prompts")
    category = taxonomy.category("everyday")
    exemplars = random.Random(0).sample(category.exemplars, 6)
    return prompts.render(
        PromptLibrary.generation_template(category),
        **generation_variables(taxonomy, category, exemplars, 8),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    prompt = _prompt()
    seeds = list(range(1, args.calls + 1))
    backend = LocalBackend()
    llama = backend._load()
    llama.create_completion(prompt, max_tokens=8, seed=0)  # warm the prompt cache path

    def alone() -> tuple[int, float]:
        tokens, started = 0, time.perf_counter()
        for seed in seeds:
            output = llama.create_completion(
                prompt,
                max_tokens=320,
                temperature=0.9,
                top_p=0.95,
                seed=seed,
                stop=list(COMPLETION_STOP),
                repeat_penalty=1.1,
            )
            tokens += output["usage"]["completion_tokens"]
        return tokens, time.perf_counter() - started

    def through(directory: Path) -> tuple[int, float]:
        client = LLMClient(
            backend, CallCache(directory / "calls.sqlite"), EventLog(directory / "e")
        )
        requests = [
            Request(prompt=prompt, max_tokens=320, seed=seed, stop=COMPLETION_STOP)
            for seed in seeds
        ]
        stats, started = CallStats(), time.perf_counter()
        client.run(requests, stats)
        elapsed = time.perf_counter() - started
        client.close()
        client.cache.close()
        return stats.output_tokens, elapsed

    # alternate the two, several times, so drift in the machine's speed hits both alike
    totals = {"alone": [0, 0.0], "through": [0, 0.0]}
    for repeat in range(args.repeats):
        for name in ("alone", "through") if repeat % 2 == 0 else ("through", "alone"):
            with tempfile.TemporaryDirectory() as directory:
                tokens, elapsed = alone() if name == "alone" else through(Path(directory))
            totals[name][0] += tokens
            totals[name][1] += elapsed
    rate = {name: tokens / elapsed for name, (tokens, elapsed) in totals.items()}
    backend.close()
    print(f"calls {args.calls} x {args.repeats} repeats, prompt {len(prompt)} chars")
    print(f"llama.cpp alone      {rate['alone']:8.1f} tokens/s ({totals['alone'][0]} tokens)")
    print(f"through the client   {rate['through']:8.1f} tokens/s ({totals['through'][0]} tokens)")
    print(f"share                {rate['through'] / rate['alone']:8.1%}")


if __name__ == "__main__":
    main()
