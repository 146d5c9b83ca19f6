"""The load generator of the concurrent-ack benchmark, a process of its own so that nothing else
(the Slack simulator, the benchmark's bookkeeping, their garbage) shares its event loop.

    .venv/bin/python -m bench.load --url URL --requests FILE [--concurrency 100]

FILE is a JSON list of requests, `{"body": "...", "headers": {...}}`, signed beforehand. The first
`--concurrency` of them open the connections (not measured); the rest are POSTed with `--concurrency`
in flight at any time. Prints one JSON object: the latency of each answered request in ms
(`latencies_ms`, 200 only), `failed` (any other answer, or none) and `wall_s`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

Request = tuple[bytes, dict[str, str]]


@dataclass
class Burst:
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    failed: int = 0

    @property
    def per_second(self) -> float:
        return len(self.latencies_ms) / self.wall_s if self.wall_s else float("nan")


async def burst(url: str, requests: list[Request], concurrency: int) -> Burst:
    """POST every request, `concurrency` in flight at any time, on connections opened beforehand."""
    result = Burst()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def send(body: bytes, headers: dict[str, str]) -> bool:
            try:
                async with http.post(url, data=body, headers=headers) as r:
                    await r.read()
                    return r.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        warm, measured = requests[:concurrency], iter(requests[concurrency:])
        await asyncio.gather(*(send(b, h) for b, h in warm))  # connection set-up is not measured

        async def worker() -> None:
            for body, headers in measured:  # one shared iterator: each request is sent once
                start = time.perf_counter()
                if await send(body, headers):
                    result.latencies_ms.append((time.perf_counter() - start) * 1000)
                else:
                    result.failed += 1

        gc.collect()
        gc.freeze()  # nothing allocated before this is scanned again while measuring
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--requests", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    requests = [(r["body"].encode(), r["headers"]) for r in json.loads(args.requests.read_text())]
    result = asyncio.run(burst(args.url, requests, args.concurrency))
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
