"""Make the PyTorch parity fixtures for test/model/parity.test.ts.

    /usr/bin/python3 scripts/make_parity_fixtures.py            # float64 reference (committed)
    /usr/bin/python3 scripts/make_parity_fixtures.py --float32  # same math in float32, for comparison

(Debian's python3-torch; tested with torch 1.13.) Writes test/fixtures/parity/gpt2.safetensors
and test/fixtures/parity/llama.safetensors. The output is deterministic for a given torch build.

Why float64 by default: the initial weights are drawn in float32 (so they are exactly the
float32 values our TypeScript model gets), but the forward, backward and AdamW steps run in
float64 and the results are rounded to float32 only when saved. Logits, loss and gradients
agree to ~1e-7 either way; the parameters after 3 AdamW steps do not: Adam divides each
gradient element by its own running RMS, so elements whose gradient is tiny compared with the
rest of the tensor turn float32 rounding noise into update noise of order lr. On these fixtures
PyTorch's own float32 run is ~1e-4 (relative) away from the float64 trajectory, i.e. at the
tolerance of the test, while our float32 TypeScript is ~3e-5 away. A float64 reference measures
our error alone instead of the sum of two float32 errors.

The two model families are written here in plain PyTorch, with exactly the parameter
names, weight layouts and math of src/model/transformer.ts:

  gpt2:  x = wte[tokens] + wpe[0..T); blocks x += attn(ln_1(x)); x += mlp(ln_2(x));
         LayerNorm, Conv1D weights stored (in, out) so y = x @ W + b, fused c_attn split into
         q | k | v, GELU (tanh approximation), logits = ln_f(x) @ wte^T (tied head)
  llama: x = embed_tokens[tokens]; RMSNorm, torch Linear weights stored (out, in), RoPE
         (Hugging Face rotate-half), grouped-query attention, MLP down(silu(gate(x)) * up(x)),
         separate lm_head

Each fixture holds the batch, the initial weights, the logits, loss and gradients at those
weights, and the losses and weights of 3 AdamW steps (global-norm clipping to 1.0 before each).
"""
import json
import math
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_params import init_params as _init_params, param_specs  # noqa: E402
import torch.nn.functional as F

B, T = 3, 11
LR = 1e-2
BETAS = (0.9, 0.95)
EPS = 1e-8
WEIGHT_DECAY = 0.1
CLIP = 1.0
STEPS = 3
NOISE = 0.1  # added to norm weights/biases and linear biases so their gradients are tested

CONFIGS = {
    'gpt2': dict(family='gpt2', vocabSize=37, blockSize=16, nLayer=2, nHead=4, nKvHead=4, nEmbd=32,
                 hiddenDim=128, bias=True, tiedEmbeddings=True, normEps=1e-5, ropeTheta=10000, dropout=0),
    'llama': dict(family='llama', vocabSize=41, blockSize=16, nLayer=2, nHead=4, nKvHead=2, nEmbd=32,
                  hiddenDim=88, bias=False, tiedEmbeddings=False, normEps=1e-5, ropeTheta=10000, dropout=0),
}
SEEDS = {'gpt2': 1234, 'llama': 4321}


def init_params(cfg, specs, dtype):
    return _init_params(cfg, specs, dtype, noise=NOISE)


# ------------------------------------------------------------------ the model

def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased variance
    return (x - mean) * torch.rsqrt(var + eps) * w + b


def rms_norm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def conv1d(x, w, b):  # GPT-2 Conv1D: w is (in, out)
    return x @ w + b


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_cos_sin(T_, hs, theta, dtype):
    # frequencies and angles in float32 as Hugging Face (and src/tensor/ops/rope.ts) compute them
    inv_freq = 1.0 / (theta ** (torch.arange(0, hs, 2).float() / hs))
    angle = torch.outer(torch.arange(T_).float(), inv_freq)  # (T, hs/2)
    emb = torch.cat((angle, angle), dim=-1).to(dtype)  # (T, hs)
    return emb.cos(), emb.sin()


def attention(q, k, v, n_head, n_kv_head):
    """q (B,T,nHead*hs), k/v (B,T,nKvHead*hs) -> (B,T,nHead*hs); causal, by hand."""
    Bq, Tq, D = q.shape
    hs = D // n_head
    q = q.view(Bq, Tq, n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
    k = k.view(Bq, Tq, n_kv_head, hs).transpose(1, 2)  # (B, nkv, T, hs)
    v = v.view(Bq, Tq, n_kv_head, hs).transpose(1, 2)
    group = n_head // n_kv_head
    k = k.repeat_interleave(group, dim=1)  # query head h reads kv head h // group
    v = v.repeat_interleave(group, dim=1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, T, T)
    mask = torch.triu(torch.ones(Tq, Tq, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(mask, float('-inf'))
    y = F.softmax(scores, dim=-1) @ v  # (B, nh, T, hs)
    return y.transpose(1, 2).reshape(Bq, Tq, D)


def x_dtype(P):
    return next(iter(P.values())).dtype


def forward(cfg, P, tokens, targets):
    """Returns (logits (B,T,V), mean cross-entropy)."""
    Bx, Tx = tokens.shape
    C, nh, nkv = cfg['nEmbd'], cfg['nHead'], cfg['nKvHead']
    hs = C // nh
    kv = nkv * hs
    eps = cfg['normEps']
    if cfg['family'] == 'gpt2':
        x = P['transformer.wte.weight'][tokens] + P['transformer.wpe.weight'][:Tx]
        for l in range(cfg['nLayer']):
            p = f'transformer.h.{l}'
            h = layer_norm(x, P[f'{p}.ln_1.weight'], P[f'{p}.ln_1.bias'], eps)
            qkv = conv1d(h, P[f'{p}.attn.c_attn.weight'], P[f'{p}.attn.c_attn.bias'])
            q, k, v = qkv.split([C, kv, kv], dim=-1)
            y = attention(q, k, v, nh, nkv)
            x = x + conv1d(y, P[f'{p}.attn.c_proj.weight'], P[f'{p}.attn.c_proj.bias'])
            h = layer_norm(x, P[f'{p}.ln_2.weight'], P[f'{p}.ln_2.bias'], eps)
            h = F.gelu(conv1d(h, P[f'{p}.mlp.c_fc.weight'], P[f'{p}.mlp.c_fc.bias']), approximate='tanh')
            x = x + conv1d(h, P[f'{p}.mlp.c_proj.weight'], P[f'{p}.mlp.c_proj.bias'])
        x = layer_norm(x, P['transformer.ln_f.weight'], P['transformer.ln_f.bias'], eps)
        logits = x @ P['transformer.wte.weight'].t()  # tied head
    else:
        cos, sin = rope_cos_sin(Tx, hs, cfg['ropeTheta'], x_dtype(P))
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]  # broadcast over (B, T, heads, hs)

        def rope(t, n):
            t = t.view(Bx, Tx, n, hs)
            return (t * cos + rotate_half(t) * sin).reshape(Bx, Tx, n * hs)

        x = P['model.embed_tokens.weight'][tokens]
        for l in range(cfg['nLayer']):
            p = f'model.layers.{l}'
            h = rms_norm(x, P[f'{p}.input_layernorm.weight'], eps)
            q = F.linear(h, P[f'{p}.self_attn.q_proj.weight'])
            k = F.linear(h, P[f'{p}.self_attn.k_proj.weight'])
            v = F.linear(h, P[f'{p}.self_attn.v_proj.weight'])
            y = attention(rope(q, nh), rope(k, nkv), v, nh, nkv)
            x = x + F.linear(y, P[f'{p}.self_attn.o_proj.weight'])
            h = rms_norm(x, P[f'{p}.post_attention_layernorm.weight'], eps)
            h = F.silu(F.linear(h, P[f'{p}.mlp.gate_proj.weight'])) * F.linear(h, P[f'{p}.mlp.up_proj.weight'])
            x = x + F.linear(h, P[f'{p}.mlp.down_proj.weight'])
        x = rms_norm(x, P['model.norm.weight'], eps)
        logits = F.linear(x, P['lm_head.weight'])
    V = logits.shape[-1]
    loss = F.cross_entropy(logits.view(-1, V), targets.view(-1).long(), ignore_index=-100)
    return logits, loss


# ------------------------------------------------------------------ safetensors writer

def save_safetensors(path, tensors, metadata):
    """tensors: {name: torch tensor (float32 or int32)}; written in insertion order."""
    header = {'__metadata__': metadata}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype == torch.float64:
            t = t.float()  # rounded once, when saved
        if t.dtype == torch.float32:
            dtype, data = 'F32', t.numpy().astype('<f4').tobytes()
        elif t.dtype == torch.int32:
            dtype, data = 'I32', t.numpy().astype('<i4').tobytes()
        else:
            raise ValueError(f'{name}: unsupported dtype {t.dtype}')
        header[name] = {'dtype': dtype, 'shape': list(t.shape), 'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    js = json.dumps(header, separators=(',', ':')).encode('utf-8')
    js += b' ' * ((8 - len(js) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(js)))
        f.write(js)
        for b in blobs:
            f.write(b)


# ------------------------------------------------------------------ fixture

def make_fixture(family, out_dir, dtype):
    cfg = CONFIGS[family]
    torch.manual_seed(SEEDS[family])
    specs = param_specs(cfg)
    P = init_params(cfg, specs, dtype)
    V = cfg['vocabSize']
    tokens = torch.randint(0, V, (B, T), dtype=torch.int64)
    targets = torch.randint(0, V, (B, T), dtype=torch.int64)
    targets[0, 3] = -100
    targets[2, T - 1] = -100

    out = {'tokens': tokens.to(torch.int32), 'targets': targets.to(torch.int32)}
    initial = {name: t.detach().clone() for name, t in P.items()}

    decay = [P[name] for name, _, _, d in specs if d]
    no_decay = [P[name] for name, _, _, d in specs if not d]
    opt = torch.optim.AdamW(
        [{'params': decay, 'weight_decay': WEIGHT_DECAY}, {'params': no_decay, 'weight_decay': 0.0}],
        lr=LR, betas=BETAS, eps=EPS,
    )
    all_params = [P[name] for name, _, _, _ in specs]
    losses = []
    grads0 = None
    for step in range(STEPS):
        opt.zero_grad(set_to_none=False)
        logits, loss = forward(cfg, P, tokens, targets)
        loss.backward()
        if step == 0:
            out['logits'] = logits.detach().clone()
            out['loss'] = loss.detach().reshape(1).clone()
            grads0 = {name: P[name].grad.detach().clone() for name, _, _, _ in specs}
        torch.nn.utils.clip_grad_norm_(all_params, CLIP)
        opt.step()
        losses.append(loss.item())
    out['losses'] = torch.tensor(losses, dtype=torch.float64)
    for name, _, _, _ in specs:
        out[f'param.{name}'] = initial[name]
    for name, _, _, _ in specs:
        out[f'grad.{name}'] = grads0[name]
    for name, _, _, _ in specs:
        out[f'after3.{name}'] = P[name].detach().clone()

    metadata = {
        'config': json.dumps(cfg),
        'optimizer': json.dumps(dict(lr=LR, beta1=BETAS[0], beta2=BETAS[1], eps=EPS, weightDecay=WEIGHT_DECAY,
                                     clipGradNorm=CLIP, steps=STEPS)),
        'torch_version': torch.__version__,
        'compute_dtype': str(dtype).replace('torch.', ''),
        'generator': 'scripts/make_parity_fixtures.py',
    }
    path = os.path.join(out_dir, f'{family}.safetensors')
    save_safetensors(path, out, metadata)
    print(f'{path}: {os.path.getsize(path)} bytes, loss {out["loss"].item():.6f}, losses {losses}')


def main():
    dtype = torch.float32 if '--float32' in sys.argv[1:] else torch.float64
    torch.set_num_threads(1)
    out_dir = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'parity'))
    os.makedirs(out_dir, exist_ok=True)
    for family in CONFIGS:
        make_fixture(family, out_dir, dtype)


if __name__ == '__main__':
    main()
