"""Serving under load: the HTTP API on loopback versus the same recommend() calls in-process.

Starts `instructrec`'s server (create_app + uvicorn, one worker, the production settings) in a
subprocess on a free 127.0.0.1 port, fires a bounded number of `POST /v1/recommend` requests at a
fixed concurrency (stopping early at a time limit), then makes the same calls in-process without
HTTP. Prints one JSON line per figure:

- `http_load`: requests, errors (must be 0), p50/p99 latency, throughput;
- `in_process_baseline`: the same recommend() calls directly (p50/p99, calls per second);
- `http_vs_in_process`: throughput ratio and the median added latency.

Without `--model` it serves the test suite's stub recommender (popularity + title words over the
real MovieLens-100K) so the serving overhead itself is measured; with `--model DIR` a saved
`Recommender`, where the model dominates and requests queue for it.

Usage:
  nice -n 10 .venv/bin/python benchmarks/bench_serve.py --requests 500 --concurrency 16
  nice -n 10 .venv/bin/python benchmarks/bench_serve.py --model runs/quickstart/recommender --requests 50 --concurrency 4
  .venv/bin/python benchmarks/bench_serve.py --model runs/quickstart/recommender --requests 24 --concurrency 1 --users 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = ["I want a star wars adventure", "something funny to watch with my kids", "a scary horror film for tonight",
            "I love old westerns", "a romantic comedy, nothing too long", "documentaries about music",
            "I'm into crime thrillers and film noir", "an animated movie for my daughter", None]


def build_recommender(model: str | None):
    if model:
        from instructrec.serve import load_recommender

        return load_recommender(model)
    sys.path.insert(0, str(ROOT / "tests" / "serve"))
    from stub_recommender import StubRecommender, with_xss_items

    from instructrec.data.loaders.movielens import load_movielens_100k

    return StubRecommender(with_xss_items(load_movielens_100k()))


def serve(port: int, model: str | None, extra: dict[str, int]) -> None:
    """Child process: the server exactly as `instructrec serve` runs it (`extra`: ServeSettings
    fields given on the command line, e.g. max_batch; unset ones keep the version's defaults)."""
    import uvicorn

    from instructrec.serve import ServeLimits, ServeSettings, create_app
    from instructrec.serve.worker import load_on_model_thread

    settings = ServeSettings(port=port, limits=ServeLimits(max_queue=1024), **extra)
    rec, model_thread = load_on_model_thread(lambda: build_recommender(model))
    uvicorn.run(create_app(rec, settings, model_thread), host="127.0.0.1", port=port, workers=1,
                log_level="warning", access_log=False)


def payloads(rec, n: int, seed: int, users: int | None = None) -> list[dict]:
    """`n` request bodies: random users (70 % by id, 30 % as a five-title history) and requests;
    with `users`, every body names one of that many known users (a repeat-user workload: a user's
    follow-up requests, the case the per-user prefix cache is for)."""
    rng = random.Random(seed)
    ds = rec.dataset
    pool = rng.sample(range(ds.n_users), users) if users else None
    out = []
    for _ in range(n):
        user = rng.choice(pool) if pool else rng.randrange(ds.n_users)
        body: dict = {"k": 10}
        if pool or rng.random() < 0.7:
            body["user_id"] = str(ds.user_ids[user])
        else:  # a history of five titles, as the web page sends ids, the CLI titles
            body["history"] = [ds.title(i) for i in ds.sequences[user][:5]]
        request = rng.choice(REQUESTS)
        if request:
            body["request"] = request
        out.append(body)
    return out


async def load(url: str, bodies: list[dict], concurrency: int, max_seconds: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    deadline = time.perf_counter() + max_seconds

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty() and time.perf_counter() < deadline:
            body = queue.get_nowait()
            started = time.perf_counter()
            try:
                r = await client.post("/v1/recommend", json=body)
                if r.status_code != 200 or len(r.json()["items"]) != body["k"]:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
            latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {"latencies": latencies, "errors": errors, "wall": wall}


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values) * 1000, q)), 2) if values else float("nan")



def wait_healthy(url: str, child: subprocess.Popen, timeout_s: float, poll_s: float) -> float:
    """Seconds until the server process `child` answers `/healthz` with 200; exits the benchmark
    when it dies or `timeout_s` passes first."""
    started = time.perf_counter()
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        if child.poll() is not None or time.perf_counter() - started > timeout_s:
            raise SystemExit("the server did not start")
        time.sleep(poll_s)

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="saved recommender folder (default: the stub over MovieLens-100K)")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=300,
                        help="stop issuing requests (and, separately, in-process calls) after this long")
    parser.add_argument("--warmup", type=int, default=10, help="requests sent first and not counted")
    parser.add_argument("--baseline-calls", type=int, default=None, help="in-process calls (default: as many as HTTP made)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--users", type=int, help="draw every request from this many known users (repeat users: "
                                                   "follow-ups that the per-user prefix cache serves); default: random users")
    parser.add_argument("--max-batch", type=int, help="ServeSettings.max_batch (default: the server's own)")
    parser.add_argument("--prefix-cache-entries", type=int, help="ServeSettings.prefix_cache_entries (default: the server's own)")
    parser.add_argument("--serve-port", type=int, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    extra = {k: v for k, v in (("max_batch", args.max_batch), ("prefix_cache_entries", args.prefix_cache_entries))
             if v is not None}
    if args.serve_port:
        serve(args.serve_port, args.model, extra)
        return

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in extra.items()]
    child = subprocess.Popen([sys.executable, __file__, "--serve-port", str(port), *flags]
                             + (["--model", args.model] if args.model else []),
                             env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        rec = build_recommender(args.model)  # for the payloads and the in-process baseline
        bodies = payloads(rec, args.requests, args.seed, args.users)
        wait_healthy(url, child, 600, 0.2)
        if args.warmup:
            asyncio.run(load(url, payloads(rec, args.warmup, args.seed + 1), 2, 120))  # warm-up, not counted
        http = asyncio.run(load(url, bodies, args.concurrency, args.max_seconds))
    finally:
        child.terminate()
        child.wait(timeout=30)

    done = len(http["latencies"])
    model = args.model or "stub (popularity + title words, MovieLens-100K)"
    print(json.dumps({"figure": "http_load", "model": model, "settings": extra, "users": args.users or "random",
                      "requests": done, "planned": args.requests,
                      "concurrency": args.concurrency, "errors": len(http["errors"]),
                      "p50_ms": pct(http["latencies"], 50), "p99_ms": pct(http["latencies"], 99),
                      "throughput_rps": round(done / http["wall"], 2), "wall_s": round(http["wall"], 2)}))
    for error in http["errors"][:5]:
        print(json.dumps({"figure": "http_error", "error": error}))

    calls = args.baseline_calls or done
    direct = []
    started = time.perf_counter()
    for body in bodies[:calls]:
        if direct and time.perf_counter() - started > args.max_seconds:
            break
        t0 = time.perf_counter()
        rec.recommend(user_id=body.get("user_id"), history=body.get("history"), request=body.get("request"), k=body["k"])
        direct.append(time.perf_counter() - t0)
    wall = time.perf_counter() - started
    calls = len(direct)
    print(json.dumps({"figure": "in_process_baseline", "calls": calls, "p50_ms": pct(direct, 50),
                      "p99_ms": pct(direct, 99), "throughput_cps": round(calls / wall, 2)}))
    print(json.dumps({"figure": "http_vs_in_process",
                      "throughput_ratio": round((done / http["wall"]) / (calls / wall), 3),
                      "p50_added_ms": round(pct(http["latencies"], 50) - pct(direct, 50), 2),
                      "note": "requests queue for the single model thread, so HTTP p50 includes the wait"}))
    if http["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
