"""How well the client keeps an API saturated, and what each call costs us in CPU.

A stand-in server in a separate process answers every request after a fixed latency with
unlimited parallelism (asyncio, keep-alive). For each in-flight limit we send enough requests for
about 20 waves through the real path (`LLMClient` -> `OpenAIBackend` -> the openai SDK, with the
call cache and event log on disk) and report achieved requests per second against the ideal
(in-flight / latency) and our process's CPU milliseconds per call.

    python benchmarks/api_concurrency.py [--latency 0.2] [--in-flight 8 32 128] [--waves 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.backends import Request, make_backend  # noqa: E402
from pipeline.callcache import CallCache  # noqa: E402
from pipeline.events import EventLog  # noqa: E402
from pipeline.llm import CallStats, LLMClient  # noqa: E402
from pipeline.taxonomy import BackendSettings  # noqa: E402

ANSWER = json.dumps(
    {
        "id": "cmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "1. 벤치마크 응답입니다."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
    }
).encode()


async def _serve(port: int, latency: float) -> None:
    """HTTP/1.1 keep-alive: read a request (headers + content-length body), sleep, answer."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                await asyncio.sleep(latency)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(ANSWER)}\r\n\r\n".encode()
                    + ANSWER
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _measure(url: str, in_flight: int, count: int, directory: Path) -> tuple[float, float]:
    settings = BackendSettings(
        backend="openai", model="bench", base_url=url, max_in_flight=in_flight
    )
    client = LLMClient(
        make_backend(settings, api_key="bench"),
        CallCache(directory / f"calls-{in_flight}.sqlite"),
        EventLog(directory / f"events-{in_flight}.jsonl"),
    )
    warm = [Request(messages=(("user", "warm"),), seed=-i - 1) for i in range(in_flight)]
    client.run(warm, CallStats())  # opens the connections, as a long run would have
    requests = [Request(messages=(("user", f"질문 {i}"),), seed=i) for i in range(count)]
    wall, cpu = time.perf_counter(), time.process_time()
    client.run(requests, CallStats())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    client.close()
    client.cache.close()
    return count / wall, cpu / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--waves", type=int, default=20)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.latency))
        return
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--latency", str(args.latency)]
    )
    try:
        time.sleep(1.0)
        url = f"http://127.0.0.1:{port}/v1"
        print(f"server latency {args.latency * 1000:.0f} ms, {args.waves} waves per setting")
        header = ("in flight", "calls", "req/s", "ideal", "share", "CPU ms/call")
        print(" ".join(f"{h:>{w}}" for h, w in zip(header, (9, 6, 8, 8, 6, 12), strict=True)))
        with tempfile.TemporaryDirectory() as directory:
            for in_flight in args.in_flight:
                count = in_flight * args.waves
                rate, cpu_ms = _measure(url, in_flight, count, Path(directory))
                ideal = in_flight / args.latency
                print(
                    f"{in_flight:>9} {count:>6} {rate:>8.1f} {ideal:>8.1f} "
                    f"{rate / ideal:>6.1%} {cpu_ms:>12.2f}"
                )
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
