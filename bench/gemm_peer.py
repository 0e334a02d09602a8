"""GEMM GFLOP/s of a peer library, for bench/gemm.

    /usr/bin/python3 bench/gemm_peer.py --lib numpy|torch --threads N --ms 400

Prints one JSON object: {"lib", "version", "threads", "results": {shape: gflops}}. Shapes are the
same as bench/gemm.ts: C = A @ B with A (M, K) and B (K, N) row-major float32; "matvec" is a
(4096, 4096) matrix times a vector. The median of several timed batches is reported.
"""
import argparse
import json
import statistics
import time

SHAPES = [
    ("1024^3", 1024, 1024, 1024),
    ("2048^3", 2048, 2048, 2048),
    ("768x384 . 384x1536", 768, 1536, 384),
    ("768x1536 . 1536x384", 768, 384, 1536),
    ("matvec 4096x4096", 1, 4096, 4096),
]


def measure(fn, flops, ms):
    fn()
    rates = []
    for _ in range(5):
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < ms / 5000.0:
            fn()
            n += 1
        rates.append(flops * n / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", choices=["numpy", "torch"], required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ms", type=float, default=1000)
    args = ap.parse_args()
    import numpy as np

    results = {}
    if args.lib == "torch":
        import torch

        torch.set_num_threads(args.threads)
        version = torch.__version__
    else:
        version = np.__version__
    rng = np.random.default_rng(0)
    for name, M, N, K in SHAPES:
        if M == 1:
            a = rng.standard_normal((N, K), dtype=np.float32)  # y = W x, W (4096, 4096)
            b = rng.standard_normal((K,), dtype=np.float32)
        else:
            a = rng.standard_normal((M, K), dtype=np.float32)
            b = rng.standard_normal((K, N), dtype=np.float32)
        if args.lib == "torch":
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            out = torch.empty((N,) if M == 1 else (M, N))
            fn = (lambda: torch.mv(ta, tb, out=out)) if M == 1 else (lambda: torch.matmul(ta, tb, out=out))
        else:
            out = np.empty((N,) if M == 1 else (M, N), dtype=np.float32)
            fn = (lambda: np.dot(a, b, out=out)) if M == 1 else (lambda: np.matmul(a, b, out=out))
        results[name] = measure(fn, 2.0 * M * N * K, args.ms)
    print(json.dumps({"lib": args.lib, "version": version, "threads": args.threads, "results": results}))


if __name__ == "__main__":
    main()
