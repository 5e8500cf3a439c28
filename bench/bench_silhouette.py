"""Benchmark lib.metrics.silhouette_cosine against sklearn's silhouette_score(metric='cosine').

Run from the repo root:  python bench/bench_silhouette.py
Prints a markdown table. Takes about a minute on 2 cores (the sklearn run dominates).

1. n=20,000 d=512 (two modality-like clouds): sklearn time vs ours, speed-up, |difference|.
2. n=1,000,000 d=512 float32: our time, peak RSS growth during the call (ru_maxrss after minus
   current RSS before; an upper bound) and tracemalloc peak of
   the call, next to the size of the embeddings themselves. Run in a fresh child process so
   that ru_maxrss (a high-water mark) is not polluted by the sklearn run.
"""

import os
import resource
import subprocess
import sys
import time
import tracemalloc

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from lib.metrics import silhouette_cosine  # noqa: E402

D = 512


def make_clouds(n: int, d: int = D, seed: int = 0, dtype=np.float32, block: int = 20_000):
    """Image-like (90%) and text-like (10%) gaussian clouds shifted apart, built block-wise."""
    rng = np.random.default_rng(seed)
    shift = rng.standard_normal(d).astype(dtype) * 0.15
    n_img = int(n * 0.9)
    X = np.empty((n, d), dtype=dtype)
    for s in range(0, n, block):
        e = min(n, s + block)
        X[s:e] = rng.standard_normal((e - s, d), dtype=np.float32)
        X[s:min(e, n_img)] += shift
        X[max(s, n_img):e] -= shift
    y = np.zeros(n, dtype=np.int8)
    y[n_img:] = 1
    return X, y


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def big_case(n: int) -> None:
    """Child process: time + memory of silhouette_cosine on n x 512 float32."""
    X, y = make_clouds(n, seed=1, block=2_000)  # small blocks: keep the RSS high-water mark low
    emb_mb = X.nbytes / 2**20
    rss0 = _rss_now_mb()  # current RSS; ru_maxrss may still hold make_clouds' temporaries
    t0 = time.perf_counter()
    s = silhouette_cosine(X, y)
    dt = time.perf_counter() - t0
    rss_growth = max(_maxrss_mb(), _rss_now_mb()) - rss0  # peak during the call - before
    tracemalloc.start()
    silhouette_cosine(X, y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{dt:.6f} {rss_growth:.1f} {peak / 2**20:.1f} {emb_mb:.1f} {s:.10f}")


def main() -> None:
    from sklearn.metrics import silhouette_score

    rows = []
    n = 20_000
    X, y = make_clouds(n, seed=0)
    t0 = time.perf_counter()
    ref = silhouette_score(X, y, metric="cosine")
    t_sk = time.perf_counter() - t0
    silhouette_cosine(X[17_000:19_000], y[17_000:19_000])  # warm-up (both clusters)
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        ours = silhouette_cosine(X, y)
    t_ours = (time.perf_counter() - t0) / reps
    rows.append(
        f"| {n:,} | {D} | float32 | {t_sk:.3f} | {t_ours:.4f} | {t_sk / t_ours:,.0f}x | "
        f"{abs(ref - ours):.2e} | - | - | {X.nbytes / 2**20:.0f} |"
    )
    del X, y

    nb = 1_000_000
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--big", str(nb)],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    dt, rss, peak, emb_mb = (float(v) for v in out[:4])
    rows.append(
        f"| {nb:,} | {D} | float32 | not run (O(n^2)) | {dt:.2f} | - | - | "
        f"{rss:.0f} | {peak:.0f} | {emb_mb:.0f} |"
    )

    print(f"silhouette, cosine distance, two clusters (90% / 10%); {os.cpu_count()} CPU cores")
    print()
    print("| n | d | dtype | sklearn s | silhouette_cosine s | speed-up | abs diff "
          "| peak RSS growth MiB | tracemalloc peak MiB | embeddings MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(r)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--big":
        big_case(int(sys.argv[2]))
    else:
        main()
