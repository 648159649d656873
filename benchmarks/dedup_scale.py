"""Dedup at scale: the fuzzy and embedding passes on synthetic Korean queries and vectors.

For each size: seconds and peak memory of each pass (run in a fresh subprocess, vectors
precomputed), recall and precision against an exact all-pairs reference (full up to 20k rows,
on sampled rows beyond), and in the same run the same job done by semhash's `self_deduplicate`
on the same vectors and by a naive all-pairs `rapidfuzz.process.cdist`, as ratios. Also e5
encoding throughput. Usage:

    python benchmarks/dedup_scale.py --sizes 5000 100000 1000000

semhash is needed for its column (pip install -e ".[bench]"); without it that column is skipped.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz, process

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.dedup.fuzzy import fuzzy_matches  # noqa: E402
from pipeline.dedup.keys import dedup_key  # noqa: E402
from pipeline.dedup.vectors import similar_pairs  # noqa: E402
from pipeline.taxonomy import DedupSettings  # noqa: E402

SETTINGS = DedupSettings()
FUZZY_THRESHOLD = SETTINGS.fuzzy_threshold
COSINE_THRESHOLD = SETTINGS.embedding_threshold
FULL_REFERENCE_LIMIT = 20_000
SAMPLE_ROWS = 300

WHO = [
    "우리 팀장",
    "옆집 사람",
    "전 남자친구",
    "같은 반 친구",
    "회사 동료",
    "시어머니",
    "동생",
    "거래처 직원",
    "단골 손님",
    "학원 선생님",
    "이웃집 할머니",
    "군대 선임",
    "아르바이트 사장",
    "새로 온 신입",
]
WHAT = [
    "휴대폰 비밀번호",
    "집 주소",
    "카드 번호",
    "메신저 대화",
    "차량 번호",
    "통장 잔고",
    "출근 시간",
    "택배 송장",
    "병원 기록",
    "사진 파일",
    "이메일 계정",
    "중고 거래 내역",
    "회사 메일",
    "가족 관계",
]
HOW = [
    "몰래 알아내는",
    "들키지 않고 보는",
    "흔적 없이 빼내는",
    "허락 없이 확인하는",
    "조용히 추적하는",
    "티 안 나게 복사하는",
    "감쪽같이 바꾸는",
    "쉽게 훔쳐보는",
]
ENDINGS = [
    ("방법 알려 줘", "방법 알려 주세요"),
    ("법 좀 알려줘", "법 좀 알려 주실래요"),
    ("요령이 있을까?", "요령이 있을까요?"),
    ("방법이 뭐야?", "방법이 뭔가요?"),
]
PLACES = [
    "지하철에서",
    "회사에서",
    "카페에서",
    "학교에서",
    "밤늦게",
    "주말에",
    "출근길에",
    "퇴근 후에",
    "점심시간에",
    "새벽에",
    "휴가 중에",
    "단톡방에서",
]
SYLLABLES = [chr(code) for code in range(0xAC00, 0xD7A4, 37)]


def make_queries(n: int, seed: int, dense: bool = False) -> list[str]:
    """Korean queries from slot lists plus random syllable tags, with about 20% planted
    near-duplicates of earlier queries: a particle or spacing edit, a politer ending, swapped
    clauses, a place swapped for another, a typo.

    By default each query carries two random tags (a 3-syllable name and a 2-syllable place),
    so the background is diverse and near-duplicates are the planted ones. `dense` keeps one
    3-syllable tag: the ~75k slot combinations then repeat at 1M rows and most rows have
    accidental near-duplicates (ratio ~90), the worst case for candidate generation."""
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    for index in range(n):
        if index and rng.random() < 0.2:
            source = texts[int(rng.integers(0, index))]
            kind = int(rng.integers(0, 5))
            if kind == 0:
                text = (
                    source.replace("의 ", " ", 1) if "의 " in source else source.replace(" ", "", 1)
                )
            elif kind == 1:
                plain, polite = ENDINGS[int(rng.integers(0, len(ENDINGS)))]
                text = source.replace(plain, polite) if plain in source else source + "요"
            elif kind == 2:
                head, _, tail = source.partition(", ")
                text = f"{tail}, {head}" if tail else source + "!"
            elif kind == 3:
                text = source.replace(source.split(" ")[0], str(rng.choice(PLACES)), 1)
            else:
                chars = list(source)
                chars[int(rng.integers(0, len(chars)))] = str(rng.choice(SYLLABLES))
                text = "".join(chars)
            texts.append(text)
            continue
        tag = "".join(rng.choice(SYLLABLES, size=3))
        plain, _ = ENDINGS[int(rng.integers(0, len(ENDINGS)))]
        place = (
            str(rng.choice(PLACES)) if dense else "".join(rng.choice(SYLLABLES, size=2)) + "에서"
        )
        texts.append(
            f"{place} {tag}, {rng.choice(WHO)}의 {rng.choice(WHAT)} {rng.choice(HOW)} {plain}"
        )
    return texts


def make_vectors(n: int, seed: int, dim: int = 384) -> np.ndarray:
    """Clustered unit vectors with about 10% noisy copies (cosine to their source ~0.97-0.99).

    Built in chunks into one float32 array, so generating 1M rows peaks near the array's own
    1.5 GB and the passes' peak memory is theirs, not the generator's."""
    rng = np.random.default_rng(seed)
    n_centres = max(10, n // 100)
    centres = rng.standard_normal((n_centres, dim), dtype=np.float32)
    vectors = np.empty((n, dim), dtype=np.float32)
    chunk = 100_000
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        vectors[start:stop] = centres[rng.integers(0, n_centres, stop - start)]
        vectors[start:stop] += 0.9 * rng.standard_normal((stop - start, dim), dtype=np.float32)
    copies = np.flatnonzero(rng.random(n) < 0.1)
    sources = rng.integers(0, n, len(copies))
    for start in range(0, len(copies), chunk):
        rows, of = copies[start : start + chunk], sources[start : start + chunk]
        noise = 0.12 * rng.standard_normal((len(rows), dim), dtype=np.float32)
        vectors[rows] = vectors[of] + noise
    for start in range(0, n, chunk):
        block = vectors[start : start + chunk]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return vectors


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(job: str, n: int, seed: int, dense: bool) -> dict:
    """One measured pass in a fresh process, so its peak memory is its own."""
    if job == "fuzzy":
        keys = [dedup_key(text) for text in make_queries(n, seed, dense)]
        base = _peak_mib()
        started = time.perf_counter()
        pairs = fuzzy_matches(keys, FUZZY_THRESHOLD, SETTINGS.num_perm, SETTINGS.bands)
        seconds = time.perf_counter() - started
        found = [(i, j) for i, j, _ in pairs]
    elif job == "embedding":
        vectors = make_vectors(n, seed)
        base = _peak_mib()
        started = time.perf_counter()
        found = [(i, j) for i, j, _ in similar_pairs(vectors, COSINE_THRESHOLD)]
        seconds = time.perf_counter() - started
    elif job == "semhash":
        from semhash import SemHash

        vectors = make_vectors(n, seed)
        records = [f"row{i}" for i in range(n)]

        class Lookup:
            """Hands semhash the precomputed vectors for its records."""

            def encode(self, sentences: list[str], **_: object) -> np.ndarray:
                return vectors[[int(s[3:]) for s in sentences]]

        base = _peak_mib()
        started = time.perf_counter()
        result = SemHash.from_records(records, model=Lookup()).self_deduplicate(
            threshold=COSINE_THRESHOLD
        )
        seconds = time.perf_counter() - started
        found = [(0, 0)] * len(result.filtered)
    else:
        raise ValueError(job)
    return {
        "seconds": seconds,
        "extra_mib": _peak_mib() - base,
        "peak_mib": _peak_mib(),
        "pairs": found,
    }


def run_worker(job: str, n: int, seed: int, dense: bool) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--worker", job, "--sizes", str(n), "--seed", str(seed)]
        + (["--dense"] if dense else []),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(output.stdout)


def fuzzy_reference(keys: list[str], rows: np.ndarray) -> tuple[set[tuple[int, int]], float]:
    """True pairs involving `rows` (all rows when it covers them), and the cdist seconds."""
    started = time.perf_counter()
    truth: set[tuple[int, int]] = set()
    for start in range(0, len(rows), 2000):
        block = rows[start : start + 2000]
        scores = process.cdist(
            [keys[i] for i in block],
            keys,
            scorer=fuzz.ratio,
            score_cutoff=FUZZY_THRESHOLD,
            workers=-1,
            dtype=np.uint8,
        )
        for r, c in zip(*np.nonzero(scores), strict=True):
            i, j = int(block[r]), int(c)
            if i != j:
                truth.add((min(i, j), max(i, j)))
    return truth, time.perf_counter() - started


def vector_reference(vectors: np.ndarray, rows: np.ndarray) -> set[tuple[int, int]]:
    truth: set[tuple[int, int]] = set()
    for start in range(0, len(rows), 2048):
        block = rows[start : start + 2048]
        scores = vectors[block] @ vectors.T
        for r, c in zip(*np.nonzero(scores >= COSINE_THRESHOLD), strict=True):
            i, j = int(block[r]), int(c)
            if i != j:
                truth.add((min(i, j), max(i, j)))
    return truth


def score(
    found: list[tuple[int, int]], truth: set[tuple[int, int]], rows: np.ndarray | None
) -> tuple[float, float]:
    """Recall and precision, restricted to pairs touching the sampled rows when sampled."""
    pairs = {(min(i, j), max(i, j)) for i, j in found}
    if rows is not None:
        sampled = set(rows.tolist())
        pairs = {p for p in pairs if p[0] in sampled or p[1] in sampled}
    hits = len(pairs & truth)
    return hits / max(len(truth), 1), hits / max(len(pairs), 1)


def e5_throughput() -> float:
    from pipeline.embed import make_embedder

    embedder = make_embedder("e5")
    queries = make_queries(600, seed=9)
    embedder.encode(queries[:20])
    started = time.perf_counter()
    embedder.encode(queries)
    return len(queries) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=["fuzzy", "embedding", "semhash"])
    parser.add_argument("--no-semhash", action="store_true")
    parser.add_argument(
        "--passes", nargs="+", choices=["fuzzy", "embedding"], default=["fuzzy", "embedding"]
    )
    parser.add_argument(
        "--dense",
        action="store_true",
        help="template-dense queries (see make_queries): the worst case",
    )
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.sizes[0], args.seed, args.dense)))
        return
    try:
        import semhash  # noqa: F401

        with_semhash = not args.no_semhash
    except ImportError:
        with_semhash = False
    if "embedding" in args.passes:
        print(f"e5 encoding: {e5_throughput():.0f} queries/s")
    print(f"queries: {'dense templates' if args.dense else 'diverse background'}")
    for n in args.sizes:
        rng = np.random.default_rng(n)
        full = n <= FULL_REFERENCE_LIMIT
        rows = np.arange(n) if full else np.sort(rng.choice(n, SAMPLE_ROWS, replace=False))
        if "fuzzy" in args.passes:
            fuzzy_pass(n, args, rows, full)
        if "embedding" in args.passes:
            embedding_pass(n, args, rows, full, with_semhash)


def fuzzy_pass(n: int, args: argparse.Namespace, rows: np.ndarray, full: bool) -> None:
    keys = [dedup_key(text) for text in make_queries(n, args.seed, args.dense)]
    fuzzy = run_worker("fuzzy", n, args.seed, args.dense)
    truth, cdist_seconds = fuzzy_reference(keys, rows)
    naive = cdist_seconds if full else cdist_seconds * n / len(rows) / 2
    recall, precision = score(fuzzy["pairs"], truth, None if full else rows)
    print(
        f"n={n} fuzzy: {fuzzy['seconds']:.1f}s peak {fuzzy['peak_mib']:.0f}MiB "
        f"(+{fuzzy['extra_mib']:.0f}) recall {recall:.3f} precision {precision:.3f} "
        f"pairs {len(fuzzy['pairs'])}; naive cdist {naive:.1f}s"
        f"{'' if full else ' (extrapolated from sampled rows)'} = "
        f"{naive / fuzzy['seconds']:.1f}x slower",
        flush=True,
    )


def embedding_pass(
    n: int, args: argparse.Namespace, rows: np.ndarray, full: bool, with_semhash: bool
) -> None:
    vectors = make_vectors(n, args.seed)
    truth = vector_reference(vectors, rows)
    del vectors
    embedding = run_worker("embedding", n, args.seed, args.dense)
    recall, precision = score(embedding["pairs"], truth, None if full else rows)
    line = (
        f"n={n} embedding: {embedding['seconds']:.1f}s peak {embedding['peak_mib']:.0f}MiB "
        f"(+{embedding['extra_mib']:.0f}) recall {recall:.3f} precision {precision:.3f} "
        f"pairs {len(embedding['pairs'])}"
    )
    if with_semhash:
        semhash_run = run_worker("semhash", n, args.seed, args.dense)
        line += (
            f"; semhash self_deduplicate {semhash_run['seconds']:.1f}s peak "
            f"{semhash_run['peak_mib']:.0f}MiB = "
            f"{semhash_run['seconds'] / embedding['seconds']:.1f}x our time"
        )
    print(line, flush=True)


if __name__ == "__main__":
    main()
