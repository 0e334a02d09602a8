"""The parameter table of llm.ts models for the PyTorch-side tools (parity fixtures, bench peer).

Mirrors src/model/parameters.ts: Hugging Face names, shapes and layouts (GPT-2 Conv1D weights
are (in, out), Llama/torch Linear weights (out, in)), GPT-2 style initialisation, and which
parameters get weight decay.
"""
import math

import torch


def param_specs(cfg):
    """[(name, shape, init, decay)] in the order of src/model/parameters.ts.
    init is 'normal' (std 0.02), 'residual' (std 0.02/sqrt(2*nLayer)), 'zeros' or 'ones'."""
    C, hs = cfg['nEmbd'], cfg['nEmbd'] // cfg['nHead']
    kv = cfg['nKvHead'] * hs
    H = cfg['hiddenDim']
    specs = []
    if cfg['family'] == 'gpt2':
        specs.append(('transformer.wte.weight', (cfg['vocabSize'], C), 'normal', False))
        specs.append(('transformer.wpe.weight', (cfg['blockSize'], C), 'normal', False))

        def linear(name, d_in, d_out, init):  # Conv1D layout (in, out)
            specs.append((f'{name}.weight', (d_in, d_out), init, True))
            if cfg['bias']:
                specs.append((f'{name}.bias', (d_out,), 'zeros', False))

        def norm(name):
            specs.append((f'{name}.weight', (C,), 'ones', False))
            if cfg['bias']:
                specs.append((f'{name}.bias', (C,), 'zeros', False))

        for l in range(cfg['nLayer']):
            p = f'transformer.h.{l}'
            norm(f'{p}.ln_1')
            linear(f'{p}.attn.c_attn', C, C + 2 * kv, 'normal')
            linear(f'{p}.attn.c_proj', C, C, 'residual')
            norm(f'{p}.ln_2')
            linear(f'{p}.mlp.c_fc', C, H, 'normal')
            linear(f'{p}.mlp.c_proj', H, C, 'residual')
        norm('transformer.ln_f')
    else:
        specs.append(('model.embed_tokens.weight', (cfg['vocabSize'], C), 'normal', False))

        def linear(name, d_in, d_out, init):  # torch Linear layout (out, in)
            specs.append((f'{name}.weight', (d_out, d_in), init, True))

        for l in range(cfg['nLayer']):
            p = f'model.layers.{l}'
            specs.append((f'{p}.input_layernorm.weight', (C,), 'ones', False))
            linear(f'{p}.self_attn.q_proj', C, C, 'normal')
            linear(f'{p}.self_attn.k_proj', C, kv, 'normal')
            linear(f'{p}.self_attn.v_proj', C, kv, 'normal')
            linear(f'{p}.self_attn.o_proj', C, C, 'residual')
            specs.append((f'{p}.post_attention_layernorm.weight', (C,), 'ones', False))
            linear(f'{p}.mlp.gate_proj', C, H, 'normal')
            linear(f'{p}.mlp.up_proj', C, H, 'normal')
            linear(f'{p}.mlp.down_proj', H, C, 'residual')
        specs.append(('model.norm.weight', (C,), 'ones', False))
    if not cfg['tiedEmbeddings']:
        specs.append(('lm_head.weight', (cfg['vocabSize'], C), 'normal', True))
    return specs


def init_params(cfg, specs, dtype=torch.float32, noise=0.0):
    """Draws in float32 (the values the TypeScript model is given), then casts to dtype.
    noise > 0 perturbs norm gains and biases (so that tests exercise their gradients)."""
    params = {}
    for name, shape, init, _ in specs:
        if init == 'normal':
            t = torch.randn(shape) * 0.02
        elif init == 'residual':
            t = torch.randn(shape) * (0.02 / math.sqrt(2 * cfg['nLayer']))
        elif init == 'ones':
            t = torch.ones(shape) + noise * torch.randn(shape) if noise else torch.ones(shape)
        else:
            t = torch.zeros(shape) + noise * torch.randn(shape) if noise else torch.zeros(shape)
        params[name] = t.float().to(dtype).contiguous().requires_grad_(True)
    return params
