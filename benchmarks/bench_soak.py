"""Soak: the HTTP server with the real default-model recommender under mixed valid and invalid traffic.

Starts the server as `instructrec serve` runs it (the recommender loaded once, `create_app` +
uvicorn, one worker, the default limits) in a subprocess on a free 127.0.0.1 port, sends a warm-up
batch, then a bounded number of requests at a fixed concurrency: about 60 % valid recommend calls
(known user, history by titles, cold start, explicit candidates) and title searches, 40 % invalid
bodies (broken JSON, not UTF-8, unknown user or item, k out of range, user_id with history, a
typo'd field, a string for an integer, a body over the size limit). Every answer is checked
against the status that request must get. The server's resident memory (RSS, from /proc) is
sampled through the run. Loopback only; stops by itself (request count and a time limit) and
stops the server. Prints one JSON line per figure and exits 1 if any answer was a 5xx or not the
expected status, or if RSS moved more than `--rss-tolerance` from its value after warm-up.

The recommender: `--model DIR` (any saved one), or by default it builds and saves (once, reused
from `--build-dir`) the default model, untuned (`RecommenderSettings(model="default")`,
SmolLM2-135M-Instruct), with SASRec (two-minute training cap) as first stage and BM25 for request
text, fitted on MovieLens-100K; `--retriever popularity` swaps SASRec for popularity.

Usage:
  nice -n 5 .venv/bin/python benchmarks/bench_soak.py                    # 300 requests, concurrency 8
  nice -n 5 .venv/bin/python benchmarks/bench_soak.py --model runs/quickstart/recommender --requests 100
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
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

# a sibling script: `python benchmarks/bench_soak.py` puts benchmarks/ on the import path
from bench_serve import wait_healthy

REQUESTS = ["I want a star wars adventure", "something funny to watch with my kids", "a scary horror film for tonight",
            "I love old westerns", "a romantic comedy, nothing too long", "I'm into crime thrillers and film noir"]


def build_default_recommender(folder: Path, retriever: str, sasrec_minutes: float) -> Path:
    """The default model, untuned, over MovieLens-100K, saved to `folder` (reused when present)."""
    if (folder / "settings.json").exists():
        return folder
    from instructrec.candidates.bm25 import BM25
    from instructrec.candidates.popularity import Popularity
    from instructrec.candidates.sasrec import SASRec, SASRecSettings
    from instructrec.data.loaders.movielens import load_movielens_100k
    from instructrec.data.split import leave_one_out
    from instructrec.model.backend import load_model
    from instructrec.recommender import Recommender
    from instructrec.recommender.recommender import RecommenderSettings

    started = time.perf_counter()
    ds = load_movielens_100k()
    split = leave_one_out(ds)
    first = (Popularity().fit(ds, split) if retriever == "popularity" else
             SASRec(SASRecSettings(seed=0, max_minutes=sasrec_minutes, progress=False)).fit(ds, split))
    rec = Recommender(ds, load_model("default", device="cpu"), first, BM25().fit(ds, split),
                      RecommenderSettings(model="default"))
    rec.save(folder)
    print(json.dumps({"figure": "built_recommender", "folder": str(folder), "retriever": retriever,
                      "seconds": round(time.perf_counter() - started, 1)}), flush=True)
    return folder


def serve(port: int, model: str) -> None:
    """Child process: the server as `instructrec serve --model DIR` runs it (loopback, default limits)."""
    import uvicorn

    from instructrec.serve import ServeSettings, create_app, load_recommender

    rec = load_recommender(model)
    uvicorn.run(create_app(rec, ServeSettings(port=port)), host="127.0.0.1", port=port, workers=1,
                log_level="warning", access_log=False)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


Call = tuple[str, str, dict, int, str]  # method, path, httpx kwargs, expected status, kind


def make_calls(ds, n: int, seed: int) -> list[Call]:
    """`n` requests, each with the status it must get; about 60 % valid, 40 % invalid."""
    rng = random.Random(seed)
    users = [str(u) for u in ds.user_ids]
    titles = [ds.title(i) for i in range(ds.n_items)]
    item_ids = [str(i) for i in ds.item_ids]
    raw = {"headers": {"content-type": "application/json"}}

    def recommend(body: dict) -> dict:
        return {"json": body}

    def one() -> Call:
        r = rng.random()
        request = rng.choice(REQUESTS)
        if r < 0.22:
            return ("POST", "/v1/recommend", recommend({"user_id": rng.choice(users), "request": request, "k": 10}),
                    200, "valid:user")
        if r < 0.36:
            history = [titles[i] for i in ds.sequences[rng.randrange(ds.n_users)][:5]]
            return ("POST", "/v1/recommend", recommend({"history": history, "request": request, "k": 5}), 200,
                    "valid:history")
        if r < 0.42:
            return ("POST", "/v1/recommend", recommend({"request": request}), 200, "valid:cold-start")
        if r < 0.48:
            cands = rng.sample(item_ids, 12)
            return ("POST", "/v1/recommend", recommend({"user_id": rng.choice(users), "candidates": cands,
                                                        "request": request, "k": 5, "exclude_seen": False}),
                    200, "valid:candidates")
        if r < 0.60:
            word = rng.choice(["star", "love", "night", "man", "the"])
            return ("GET", f"/v1/items?q={word}&limit=10", {}, 200, "valid:search")
        invalid: list[tuple[dict, int, str]] = [
            ({"content": b'{"user_id": "196", "k": ', **raw}, 422, "invalid:broken-json"),
            ({"content": b'{"request": "caf\xe9"}', **raw}, 422, "invalid:not-utf8"),
            (recommend({"user_id": f"ghost-{rng.randrange(10**6)}", "request": request}), 404, "invalid:unknown-user"),
            (recommend({"history": ["Star Wars", f"No Such Film {rng.randrange(10**6)}"]}), 404, "invalid:unknown-item"),
            (recommend({"user_id": rng.choice(users), "k": rng.choice([0, 51, -1])}), 422, "invalid:k-range"),
            (recommend({"user_id": rng.choice(users), "k": "10"}), 422, "invalid:k-type"),
            (recommend({"user_id": rng.choice(users), "history": ["Star Wars"]}), 422, "invalid:user-and-history"),
            (recommend({"user": rng.choice(users)}), 422, "invalid:unknown-field"),
            (recommend({"request": "x" * 1001}), 422, "invalid:request-too-long"),
            ({"content": b'{"request": "' + b"x" * 70_000 + b'"}', **raw}, 413, "invalid:too-large"),
        ]
        kwargs, status, kind = rng.choice(invalid)
        return ("POST", "/v1/recommend", kwargs, status, kind)

    return [one() for _ in range(n)]


async def run_calls(url: str, calls: list[Call], concurrency: int, deadline: float, pid: int,
                    rss: list[tuple[float, int]]) -> dict:
    queue: asyncio.Queue[Call] = asyncio.Queue()
    for call in calls:
        queue.put_nowait(call)
    statuses: Counter[str] = Counter()
    unexpected: list[str] = []
    latencies: list[float] = []
    done = 0
    t0 = time.perf_counter()

    async def sampler() -> None:
        while True:
            rss.append((round(time.perf_counter() - t0, 1), rss_bytes(pid)))
            await asyncio.sleep(2.0)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while not queue.empty() and time.perf_counter() < deadline:
            method, path, kwargs, expected, kind = queue.get_nowait()
            started = time.perf_counter()
            try:
                r = await client.request(method, path, **kwargs)
                status = r.status_code
                ok = status == expected and (status != 200 or (method == "GET" or r.json()["items"]))
                if not ok:
                    unexpected.append(f"{kind}: expected {expected}, got {status}: {r.text[:200]}")
            except httpx.HTTPError as exc:
                status = "transport-error"
                unexpected.append(f"{kind}: {exc!r}")
            latencies.append(time.perf_counter() - started)
            statuses[str(status)] += 1
            done += 1

    sampling = asyncio.create_task(sampler())
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    sampling.cancel()
    rss.append((round(time.perf_counter() - t0, 1), rss_bytes(pid)))
    return {"done": done, "statuses": dict(sorted(statuses.items())), "unexpected": unexpected,
            "latencies": latencies, "wall": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="saved recommender folder (default: build the default-model one)")
    parser.add_argument("--build-dir", default="/tmp/instructrec-soak-recommender",
                        help="where the default-model recommender is saved (reused if present)")
    parser.add_argument("--retriever", choices=["sasrec", "popularity"], default="sasrec")
    parser.add_argument("--sasrec-minutes", type=float, default=2.0)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=24, help="requests sent first; RSS after them is the baseline")
    parser.add_argument("--max-seconds", type=float, default=1200, help="stop issuing requests after this long")
    parser.add_argument("--rss-tolerance", type=float, default=0.10, help="allowed RSS change after warm-up")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serve-port", type=int, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.serve_port:
        serve(args.serve_port, args.model)
        return

    model = args.model or str(build_default_recommender(Path(args.build_dir), args.retriever, args.sasrec_minutes))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    child = subprocess.Popen([sys.executable, __file__, "--serve-port", str(port), "--model", model], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        startup_s = wait_healthy(url, child, 600, 0.5)
        from instructrec.data import Dataset

        ds = Dataset.load(Path(model) / "data")
        rss_loaded = rss_bytes(child.pid)
        deadline = time.perf_counter() + args.max_seconds
        warm_rss: list[tuple[float, int]] = []
        warm = asyncio.run(run_calls(url, make_calls(ds, args.warmup, args.seed + 1), args.concurrency, deadline,
                                     child.pid, warm_rss))
        rss: list[tuple[float, int]] = []
        soak = asyncio.run(run_calls(url, make_calls(ds, args.requests, args.seed), args.concurrency, deadline,
                                     child.pid, rss))
        alive = child.poll() is None
    finally:
        child.terminate()
        child.wait(timeout=30)

    mib = 1024 * 1024
    base = warm_rss[-1][1]
    values = [v for _, v in rss]
    growth_end = values[-1] / base - 1
    spread = max(abs(max(values) / base - 1), abs(min(values) / base - 1))
    lat = np.asarray(soak["latencies"]) if soak["latencies"] else np.asarray([np.nan])
    n5xx = sum(c for s, c in soak["statuses"].items() if s.startswith("5")) + \
        sum(c for s, c in warm["statuses"].items() if s.startswith("5"))
    print(json.dumps({"figure": "soak", "model": model, "requests": soak["done"], "planned": args.requests,
                      "concurrency": args.concurrency, "statuses": soak["statuses"], "5xx": n5xx,
                      "unexpected": len(soak["unexpected"]) + len(warm["unexpected"]), "server_alive": alive,
                      "p50_s": round(float(np.percentile(lat, 50)), 3), "p99_s": round(float(np.percentile(lat, 99)), 3),
                      "wall_s": round(soak["wall"], 1), "startup_s": round(startup_s, 1)}))
    print(json.dumps({"figure": "soak_rss", "loaded_mib": round(rss_loaded / mib, 1),
                      "after_warmup_mib": round(base / mib, 1), "end_mib": round(values[-1] / mib, 1),
                      "min_mib": round(min(values) / mib, 1), "max_mib": round(max(values) / mib, 1),
                      "end_vs_warmup": round(growth_end, 4), "max_abs_change_vs_warmup": round(spread, 4),
                      "samples": len(values), "tolerance": args.rss_tolerance,
                      "every_tenth_of_run_mib": [round(values[round(i * (len(values) - 1) / 10)] / mib, 1)
                                                 for i in range(11)]}))
    kinds = Counter(kind for *_, kind in make_calls(ds, args.requests, args.seed)[:soak["done"]])
    print(json.dumps({"figure": "soak_mix", **dict(sorted(kinds.items()))}))
    for line in (warm["unexpected"] + soak["unexpected"])[:10]:
        print(json.dumps({"figure": "soak_unexpected", "error": line}))
    failed = n5xx or soak["unexpected"] or warm["unexpected"] or not alive or spread > args.rss_tolerance
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
