"""W3's ceiling: plain redis-py clients looping SET + GET + DEL of the W3 tensor's bytes.

Each client is its own process (no GIL shared between them, nor with the runner) with its
own connection and key, and counts one request per SET + GET + DEL. They start together (a
barrier), run for the duration, and the parent prints one JSON line: requests/s over all
clients, p50 and p99 of one request, errors. It is what moving the tensor through the store
costs, with no serving around it.

``--client sync`` (the default, the issue's ceiling) is the synchronous ``redis.Redis``;
``--client async`` is ``redis.asyncio.Redis``, one call at a time per process, as the payload
store uses it. They differ in what a big SET costs the client: with hiredis installed the
synchronous client packs a command with hiredis' packer, which copies the whole value (about
11 ms for 4 MiB here), where ``redis.asyncio`` sends the value as its own chunk (about 2 ms);
see ``pipeserve/payload/redis_store.py``.

Run: ``python -m bench.ceilings.w3_redis --url redis://127.0.0.1:6379/0 -c 8 -d 10``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.synchronize
import time
from multiprocessing.connection import Connection

import numpy as np
import redis
import redis.asyncio

from bench import workloads


def _client(
    url: str,
    client_kind: str,
    index: int,
    side: int,
    duration_s: float,
    start: multiprocessing.synchronize.Barrier,
    out: Connection,
) -> None:
    """One client: waits at ``start``, loops for ``duration_s``, sends its latencies (s)."""
    value = workloads.w3_tensor(workloads.W3_SEED, side).tobytes()
    key = f"w3-ceiling:{index}"
    loop = _sync_loop if client_kind == "sync" else _async_loop
    out.send(loop(url, key, value, duration_s, start))


def _sync_loop(
    url: str, key: str, value: bytes, duration_s: float, start: multiprocessing.synchronize.Barrier
) -> tuple[list[float], int]:
    client = redis.Redis.from_url(url, socket_timeout=10)
    client.set(key, value)  # connect and check the round trip before the clock starts
    if client.get(key) != value:
        raise RuntimeError(f"{key}: GET returned other bytes than the SET")
    client.delete(key)
    latencies: list[float] = []
    errors = 0
    start.wait()
    deadline = time.monotonic() + duration_s
    while (began := time.monotonic()) < deadline:
        try:
            client.set(key, value)
            client.get(key)
            client.delete(key)
        except redis.RedisError:
            errors += 1
            continue
        latencies.append(time.monotonic() - began)
    client.close()
    return latencies, errors


def _async_loop(
    url: str, key: str, value: bytes, duration_s: float, start: multiprocessing.synchronize.Barrier
) -> tuple[list[float], int]:
    async def loop() -> tuple[list[float], int]:
        client = redis.asyncio.Redis.from_url(url, socket_timeout=10)
        await client.set(key, value)
        if await client.get(key) != value:
            raise RuntimeError(f"{key}: GET returned other bytes than the SET")
        await client.delete(key)
        latencies: list[float] = []
        errors = 0
        start.wait()  # every process waits here before its loop starts: blocking is fine
        deadline = time.monotonic() + duration_s
        while (began := time.monotonic()) < deadline:
            try:
                await client.set(key, value)
                await client.get(key)
                await client.delete(key)
            except redis.RedisError:
                errors += 1
                continue
            latencies.append(time.monotonic() - began)
        await client.aclose()
        return latencies, errors

    return asyncio.run(loop())


def measure(url: str, client_kind: str, clients: int, side: int, duration_s: float) -> dict[str, float]:
    """Runs ``clients`` processes for ``duration_s`` seconds; returns rps, p50_ms, p99_ms, errors."""
    context = multiprocessing.get_context("fork")
    start = context.Barrier(clients + 1)
    pipes = [context.Pipe(duplex=False) for _ in range(clients)]
    processes = [
        context.Process(target=_client, args=(url, client_kind, i, side, duration_s, start, send), daemon=True)
        for i, (_, send) in enumerate(pipes)
    ]
    for process in processes:
        process.start()
    start.wait(timeout=30)
    began = time.monotonic()
    results = [receive.recv() for receive, _ in pipes]
    elapsed = time.monotonic() - began
    for process in processes:
        process.join()
    latencies = np.array([latency for found, _ in results for latency in found])
    if latencies.size == 0:
        raise RuntimeError("no SET + GET + DEL completed")
    return {
        "rps": latencies.size / elapsed,
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "errors": sum(errors for _, errors in results),
    }


def main() -> None:
    """Measures and prints one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the Redis server, redis://host:port/db")
    parser.add_argument(
        "--client", choices=("sync", "async"), default="sync", help="redis-py client (default sync)"
    )
    parser.add_argument("-c", "--clients", type=int, default=8, help="client processes (default 8)")
    parser.add_argument(
        "--side", type=int, default=workloads.W3_SIDES["4mib"], help="tensor side (default 1024: 4 MiB)"
    )
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="seconds (default 10)")
    args = parser.parse_args()
    print(json.dumps(measure(args.url, args.client, args.clients, args.side, args.duration)))


if __name__ == "__main__":
    main()
