"""GEMM GFLOP/s of a peer library, for bench/gemm.

    python bench/gemm_peer.py --lib torch|numpy --threads N --ms 600 --shapes JSON

--shapes is bench/gemm.ts's table: [[name, M, N, K, transA, transB, beta], ...], C = op(A) op(B)
(+ C when beta is 1) with A stored (K, M) when transA, else (M, K), and B stored (N, K) when
transB, else (K, N), all float32; M == 1 is a (N, K) matrix times a vector. torch computes beta 1
in place (C.addmm_), numpy has no such call and always computes C = op(A) op(B).
Prints one JSON object: {"lib", "version", "blas", "threads", "results": {name: gflops}}, the
median of 5 timed batches per shape. torch needs no numpy.
"""
import argparse
import json
import re
import statistics
import time


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


def torch_blas(torch):
    """Which BLAS torch calls for float32 GEMM, from its build configuration."""
    cfg = torch.__config__.show()
    info = re.search(r"BLAS_INFO=(\w+)", cfg)
    mkl = re.search(r"Math Kernel Library Version ([^\n]+?)(?: for|\n)", cfg)
    out = "BLAS_INFO=" + (info.group(1) if info else "?")
    if mkl:
        out += ", Intel oneAPI MKL " + mkl.group(1).strip()
    return out


def numpy_blas(np):
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return "%s %s" % (blas.get("name", "?"), blas.get("version", ""))
    except Exception:  # older numpy: no dict mode
        return "unknown BLAS"


def torch_case(torch, M, N, K, transA, transB, beta):
    if M == 1:
        w, x, y = torch.randn(N, K), torch.randn(K), torch.empty(N)
        return lambda: torch.mv(w, x, out=y)
    A = torch.randn(K, M) if transA else torch.randn(M, K)
    B = torch.randn(N, K) if transB else torch.randn(K, N)
    a, b = (A.t() if transA else A), (B.t() if transB else B)
    C = torch.zeros(M, N)
    if beta:
        return lambda: C.addmm_(a, b)
    return lambda: torch.mm(a, b, out=C)


def numpy_case(np, M, N, K, transA, transB):
    rng = np.random.default_rng(0)
    if M == 1:
        w, x, y = rng.standard_normal((N, K), dtype=np.float32), rng.standard_normal((K,), dtype=np.float32), np.empty(N, np.float32)
        return lambda: np.dot(w, x, out=y)
    A = rng.standard_normal((K, M) if transA else (M, K), dtype=np.float32)
    B = rng.standard_normal((N, K) if transB else (K, N), dtype=np.float32)
    a, b = (A.T if transA else A), (B.T if transB else B)
    C = np.empty((M, N), np.float32)
    return lambda: np.matmul(a, b, out=C)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", choices=["numpy", "torch"], required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ms", type=float, default=600)
    ap.add_argument("--shapes", required=True)
    args = ap.parse_args()
    shapes = json.loads(args.shapes)
    results = {}
    if args.lib == "torch":
        import torch

        torch.set_num_threads(args.threads)
        version, blas = torch.__version__, torch_blas(torch)
        with torch.no_grad():
            for name, M, N, K, transA, transB, beta in shapes:
                results[name] = measure(torch_case(torch, M, N, K, transA, transB, beta), 2.0 * M * N * K, args.ms)
    else:
        import numpy as np

        version, blas = np.__version__, numpy_blas(np)
        for name, M, N, K, transA, transB, beta in shapes:
            results[name] = measure(numpy_case(np, M, N, K, transA, transB), 2.0 * M * N * K, args.ms)
    print(json.dumps({"lib": args.lib, "version": version, "blas": blas, "threads": args.threads, "results": results}))


if __name__ == "__main__":
    main()
