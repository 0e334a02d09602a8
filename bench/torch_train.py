"""PyTorch peer for bench/train.ts: times training steps of the same GPT-2 / Llama model in plain
float32 PyTorch and prints one JSON line.

    /usr/bin/python3 bench/torch_train.py --config '{"family":"gpt2","vocabSize":65,...}' \
        --batch-size 12 --block-size 64 --warmup 2 --steps 10 --threads 1

The config is our ModelConfig as JSON (camelCase keys, as src/model/config.ts). The model has
exactly our parameter shapes and math (see scripts/make_parity_fixtures.py for the parity
version); here each piece uses PyTorch's fastest stock kernel for it (F.layer_norm,
F.gelu(tanh), addmm / F.linear, scaled_dot_product_attention when this torch has it).
One training step, as src/train/trainer.ts does it:

    zero_grad; loss = forward(x, y); loss.item(); loss.backward(); clip_grad_norm_(1.0); AdamW step

on random token batches drawn before timing. Prints
{"ms_per_step": median, "tokens_per_sec": B*T*1000/median, "threads": n, ...}.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'scripts'))
from torch_params import init_params, param_specs  # noqa: E402


# ------------------------------------------------------------------ the model (src/model/transformer.ts)

HAS_SDPA = hasattr(F, 'scaled_dot_product_attention')


def rms_norm(x, w, eps):
    if hasattr(F, 'rms_norm'):
        return F.rms_norm(x, (x.shape[-1],), w, eps)
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def conv1d(x, w, b):
    """GPT-2 Conv1D, w is (in, out): y = x @ w + b in one addmm."""
    shape = x.shape
    y = torch.addmm(b, x.reshape(-1, shape[-1]), w) if b is not None else x.reshape(-1, shape[-1]) @ w
    return y.view(*shape[:-1], w.shape[1])


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_cos_sin(T, hs, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, hs, 2).float() / hs))
    angle = torch.outer(torch.arange(T).float(), inv_freq)  # (T, hs/2)
    emb = torch.cat((angle, angle), dim=-1)  # (T, hs)
    return emb.cos(), emb.sin()


def attention(q, k, v, n_head, n_kv_head, mask):
    """q (B,T,nHead*hs), k/v (B,T,nKvHead*hs) -> (B,T,nHead*hs); causal."""
    B, T, D = q.shape
    hs = D // n_head
    q = q.view(B, T, n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
    k = k.view(B, T, n_kv_head, hs).transpose(1, 2)
    v = v.view(B, T, n_kv_head, hs).transpose(1, 2)
    if n_kv_head != n_head:
        group = n_head // n_kv_head
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
    if HAS_SDPA:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
        scores = scores.masked_fill(mask[:T, :T], float('-inf'))
        y = F.softmax(scores, dim=-1) @ v
    return y.transpose(1, 2).reshape(B, T, D)


class Model:
    def __init__(self, cfg, P):
        self.cfg, self.P = cfg, P
        T = cfg['blockSize']
        self.mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        hs = cfg['nEmbd'] // cfg['nHead']
        cos, sin = rope_cos_sin(T, hs, cfg['ropeTheta'])
        self.cos, self.sin = cos[None, :, None, :], sin[None, :, None, :]  # (1, T, 1, hs)

    def forward(self, tokens, targets):
        cfg, P = self.cfg, self.P
        B, T = tokens.shape
        C, nh, nkv = cfg['nEmbd'], cfg['nHead'], cfg['nKvHead']
        hs = C // nh
        kv = nkv * hs
        eps = cfg['normEps']
        if cfg['family'] == 'gpt2':
            x = F.embedding(tokens, P['transformer.wte.weight']) + P['transformer.wpe.weight'][:T]
            for l in range(cfg['nLayer']):
                p = f'transformer.h.{l}'
                h = F.layer_norm(x, (C,), P[f'{p}.ln_1.weight'], P.get(f'{p}.ln_1.bias'), eps)
                q, k, v = conv1d(h, P[f'{p}.attn.c_attn.weight'], P.get(f'{p}.attn.c_attn.bias')).split([C, kv, kv], dim=-1)
                y = attention(q, k, v, nh, nkv, self.mask)
                x = x + conv1d(y, P[f'{p}.attn.c_proj.weight'], P.get(f'{p}.attn.c_proj.bias'))
                h = F.layer_norm(x, (C,), P[f'{p}.ln_2.weight'], P.get(f'{p}.ln_2.bias'), eps)
                h = F.gelu(conv1d(h, P[f'{p}.mlp.c_fc.weight'], P.get(f'{p}.mlp.c_fc.bias')), approximate='tanh')
                x = x + conv1d(h, P[f'{p}.mlp.c_proj.weight'], P.get(f'{p}.mlp.c_proj.bias'))
            x = F.layer_norm(x, (C,), P['transformer.ln_f.weight'], P.get('transformer.ln_f.bias'), eps)
            head = P['transformer.wte.weight'] if cfg['tiedEmbeddings'] else P['lm_head.weight']
        else:
            cos, sin = self.cos[:, :T], self.sin[:, :T]

            def rope(t, n):
                t = t.view(B, T, n, hs)
                return (t * cos + rotate_half(t) * sin).reshape(B, T, n * hs)

            x = F.embedding(tokens, P['model.embed_tokens.weight'])
            for l in range(cfg['nLayer']):
                p = f'model.layers.{l}'
                h = rms_norm(x, P[f'{p}.input_layernorm.weight'], eps)
                q = F.linear(h, P[f'{p}.self_attn.q_proj.weight'])
                k = F.linear(h, P[f'{p}.self_attn.k_proj.weight'])
                v = F.linear(h, P[f'{p}.self_attn.v_proj.weight'])
                y = attention(rope(q, nh), rope(k, nkv), v, nh, nkv, self.mask)
                x = x + F.linear(y, P[f'{p}.self_attn.o_proj.weight'])
                h = rms_norm(x, P[f'{p}.post_attention_layernorm.weight'], eps)
                h = F.silu(F.linear(h, P[f'{p}.mlp.gate_proj.weight'])) * F.linear(h, P[f'{p}.mlp.up_proj.weight'])
                x = x + F.linear(h, P[f'{p}.mlp.down_proj.weight'])
            x = rms_norm(x, P['model.norm.weight'], eps)
            head = P['model.embed_tokens.weight'] if cfg['tiedEmbeddings'] else P['lm_head.weight']
        logits = F.linear(x, head)  # (B, T, V)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


# ------------------------------------------------------------------ environment facts

def blas_libraries():
    """The BLAS / LAPACK shared objects this process has mapped (resolved through symlinks)."""
    found = []
    try:
        with open('/proc/self/maps') as f:
            for line in f:
                parts = line.split()
                if len(parts) < 6:
                    continue
                path = parts[-1]
                base = os.path.basename(path).lower()
                if any(s in base for s in ('blas', 'mkl_', 'libmkl', 'blis')):
                    real = os.path.realpath(path)
                    if real not in found:
                        found.append(real)
    except OSError:
        pass
    return found


def blas_kind(libs):
    joined = ' '.join(libs).lower()
    if 'openblas' in joined:
        return 'OpenBLAS'
    if 'mkl' in joined:
        return 'MKL'
    if 'blis' in joined:
        return 'BLIS'
    if 'atlas' in joined:
        return 'ATLAS'
    if '/blas/libblas.so' in joined:
        return 'reference BLAS (netlib)'
    return 'unknown' if libs else 'none found'


def torch_blas(libs):
    """What runs torch's matrix products: the pip wheels link MKL (and oneDNN) statically, which no
    mapped library shows; Debian's torch calls the system libblas."""
    config = torch.__config__.show()
    if 'BLAS_INFO=mkl' in config or torch.backends.mkl.is_available():
        dnn = ' + oneDNN' if torch.backends.mkldnn.is_available() else ''
        return f'MKL (built into torch){dnn}'
    return blas_kind(libs)


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--config', required=True, help='ModelConfig as JSON')
    ap.add_argument('--batch-size', type=int, required=True)
    ap.add_argument('--block-size', type=int, required=True)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--threads', type=int, default=1, help='torch.set_num_threads')
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--beta1', type=float, default=0.9)
    ap.add_argument('--beta2', type=float, default=0.99)
    ap.add_argument('--eps', type=float, default=1e-8)
    ap.add_argument('--weight-decay', type=float, default=0.1)
    ap.add_argument('--grad-clip', type=float, default=1.0)
    ap.add_argument('--seed', type=int, default=1337)
    ap.add_argument('--bf16', action='store_true', help='torch.autocast("cpu", dtype=torch.bfloat16) around the forward pass')
    a = ap.parse_args()

    cfg = json.loads(a.config)
    B, T = a.batch_size, a.block_size
    if T > cfg['blockSize']:
        sys.exit(f'block size {T} exceeds the model context {cfg["blockSize"]}')
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    specs = param_specs(cfg)
    P = init_params(cfg, specs)
    model = Model(cfg, P)
    params = [P[name] for name, _, _, _ in specs]
    decay = [P[name] for name, _, _, d in specs if d]
    no_decay = [P[name] for name, _, _, d in specs if not d]
    groups = [{'params': decay, 'weight_decay': a.weight_decay}, {'params': no_decay, 'weight_decay': 0.0}]
    # the fused CPU AdamW (torch >= 2.4) is PyTorch's fastest optimizer step; older versions use foreach
    try:
        opt = torch.optim.AdamW(groups, lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps, fused=True)
        optimizer = 'AdamW(fused=True)'
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.AdamW(groups, lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps)
        optimizer = 'AdamW(foreach)'
    if a.bf16:
        autocast = lambda: torch.autocast('cpu', dtype=torch.bfloat16)  # noqa: E731
    else:
        import contextlib
        autocast = contextlib.nullcontext

    V = cfg['vocabSize']
    n = a.warmup + a.steps
    batches = [(torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))) for _ in range(n)]

    times, cpu_times, losses = [], [], []
    for i, (x, y) in enumerate(batches):
        t0 = time.perf_counter()
        c0 = time.process_time()
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = model.forward(x, y)
        value = loss.item()
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, a.grad_clip)
        opt.step()
        dt = (time.perf_counter() - t0) * 1000
        losses.append(value)
        if i >= a.warmup:
            times.append(dt)
            cpu_times.append((time.process_time() - c0) * 1000)

    ms = statistics.median(times)
    libs = blas_libraries()
    print(json.dumps({
        'ms_per_step': ms,
        'cpu_ms_per_step': statistics.median(cpu_times),
        'optimizer': optimizer,
        'dtype': 'bf16 autocast' if a.bf16 else 'float32',
        'tokens_per_sec': B * T * 1000 / ms,
        'threads': torch.get_num_threads(),
        'step_ms': [round(t, 3) for t in times],
        'warmup': a.warmup,
        'steps': a.steps,
        'batch_size': B,
        'block_size': T,
        'params': sum(p.numel() for p in params),
        'first_loss': losses[0],
        'last_loss': losses[-1],
        'torch_version': torch.__version__,
        'sdpa': HAS_SDPA,
        'blas': torch_blas(libs),
        'blas_libraries': libs,
        'openblas_num_threads': os.environ.get('OPENBLAS_NUM_THREADS'),
        'openblas_coretype': os.environ.get('OPENBLAS_CORETYPE'),
    }))


if __name__ == '__main__':
    main()
