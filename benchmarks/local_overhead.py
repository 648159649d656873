"""The local backend's tokens per second through the pipeline's client versus llama.cpp alone.

Both sides run the same rendered generation prompt with the same seeds on the bundled Gemma 3
270M, so they produce the same tokens; the difference is our overhead (request building, the
event loop, the thread hop, the call cache and event log on disk).

    python benchmarks/local_overhead.py [--calls 12]
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
    args = parser.parse_args()
    prompt = _prompt()
    seeds = list(range(1, args.calls + 1))
    backend = LocalBackend()
    llama = backend._load()
    llama.create_completion(prompt, max_tokens=8, seed=0)  # warm the prompt cache path

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
    alone = tokens / (time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as directory:
        client = LLMClient(
            backend, CallCache(Path(directory) / "calls.sqlite"), EventLog(Path(directory) / "e")
        )
        requests = [
            Request(prompt=prompt, max_tokens=320, seed=seed, stop=COMPLETION_STOP)
            for seed in seeds
        ]
        stats, started = CallStats(), time.perf_counter()
        client.run(requests, stats)
        through = stats.output_tokens / (time.perf_counter() - started)
        client.close()
    backend.close()
    print(f"calls {args.calls}, prompt {len(prompt)} chars")
    print(f"llama.cpp alone      {alone:8.1f} tokens/s ({tokens} tokens)")
    print(f"through the client   {through:8.1f} tokens/s ({stats.output_tokens} tokens)")
    print(f"share                {through / alone:8.1%}")


if __name__ == "__main__":
    main()
