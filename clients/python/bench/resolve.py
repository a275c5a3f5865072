"""How long a key takes to reach a Python program: the client's calls against a running server.

    KEYWARD_URL=http://127.0.0.1:8080 KEYWARD_TOKEN=<resolver token> python3 bench/resolve.py [N]

Prints, for N calls each (default 500), the median and 99th percentile of: `resolve` with the
cache off (every call a request: the server's resolution, audited), `resolve` with the cache on
(within the server's TTL, no request), the async client with the cache off, and Open Notebook's
`provision_provider_keys`. The organization needs an active OpenAI credential. A and B run in
one process, one after the other, so compare them within a run.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from keyward import AsyncKeyProvider, KeyProvider, provision_provider_keys


def report(name: str, seconds: list[float]) -> None:
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(
        f"{name:<40} median {statistics.median(ms):7.3f} ms   p99 {p99:7.3f} ms   ({len(ms)} calls)"
    )


def timed(call: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


async def timed_async(make: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await make()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with KeyProvider(cache=False) as kp:
        kp.resolve("openai")  # the organization, asked once
        report("resolve, cache off (a request each)", timed(lambda: kp.resolve("openai"), n))
    with KeyProvider() as kp:
        kp.resolve("openai")
        report("resolve, cache on (within the TTL)", timed(lambda: kp.resolve("openai"), n))

    async def run_async() -> None:
        async with AsyncKeyProvider(cache=False) as akp:
            await akp.resolve("openai")
            report(
                "async resolve, cache off",
                await timed_async(lambda: akp.resolve("openai"), n),
            )
        await provision_provider_keys("openai")
        report(
            "provision_provider_keys (Open Notebook)",
            await timed_async(lambda: provision_provider_keys("openai"), n),
        )

    asyncio.run(run_async())


if __name__ == "__main__":
    main()
