"""Make test/fixtures/peft/{llama,gpt2}/: a tiny model saved by transformers (base/), a LoRA adapter
saved by PEFT (adapter/: adapter_config.json + adapter_model.safetensors) and PEFT's logits with and
without the adapter (logits.json). test/formats/peft.test.ts loads base + adapter with our loader
and compares the logits; it never needs Python.

    python3 -m venv /tmp/venv-peft
    /tmp/venv-peft/bin/pip install torch transformers peft safetensors
    /tmp/venv-peft/bin/python scripts/make_peft_fixture.py

    # and the other way round: PEFT loads an adapter dir we saved (saveLoraAdapter) onto a base
    # dir we exported (exportHfCheckpoint), and prints its logits for the given token ids
    /tmp/venv-peft/bin/python scripts/make_peft_fixture.py --check BASE_DIR ADAPTER_DIR 1,2,3

(Tested with torch 2.13.0+cpu, transformers 5.17.0, peft 0.21.0.) Both adapters have random A and B
(init_lora_weights=False) so that they change the logits; the Llama one targets q/v/down, the GPT-2
one the Conv1D modules c_attn and c_proj (fan_in_fan_out) with rsLoRA scaling.

Two more fixtures per family, over the same base (read back, not regenerated):

  grad/    LoRA on ALL linear modules (Llama q/k/v/o/gate/up/down; GPT-2 c_attn, c_proj, c_fc with
           rsLoRA) over the base with its matrices halved (BASE_SCALE), a batch of 3 sequences of different lengths, right-padded, with labels -100 on
           the prompt tokens and the padding (batch.json), and what PEFT computes for it in float64:
           the masked mean loss (batch.json) and the gradient of every adapter tensor
           (grads.safetensors, under the adapter's own keys). test/formats/peft-parity.test.ts
           computes ours with the SFT objective's loss and compares (relative error < 1e-4).
  ours/    the other direction: an adapter SAVED BY llm.ts (adapter/, written by
           scripts/make-peft-ours-adapter.mjs from test/helpers/peft-ours.ts; needs npm run build)
           loaded with PeftModel.from_pretrained; PEFT's logits for IDS in logits.json.

    /tmp/venv-peft/bin/python scripts/make_peft_fixture.py grad ours   # only these two
"""
import json
import os
import subprocess
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'peft')
IDS = [3, 17, 5, 29, 11, 0, 23, 8]


def rounded(t):
    return [float(f'{v:.7g}') for v in t.reshape(-1).tolist()]


def randomize(model, gen, gain):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * gain / p.shape[-1] ** 0.5)
            elif 'bias' in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            else:
                p.copy_(1 + torch.randn(p.shape, generator=gen) * 0.1)


def make(family):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234 if family == 'llama' else 4321)
    if family == 'llama':
        cfg = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, max_position_embeddings=32, rms_norm_eps=1e-5, rope_theta=10000.0,
                          tie_word_embeddings=False, attention_bias=False, mlp_bias=False, hidden_act='silu')
        base = LlamaForCausalLM(cfg)
        lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=['q_proj', 'v_proj', 'down_proj'],
                          task_type='CAUSAL_LM', init_lora_weights=False)
    else:
        cfg = GPT2Config(vocab_size=40, n_embd=16, n_layer=2, n_head=2, n_positions=32, layer_norm_epsilon=1e-5,
                         activation_function='gelu_new', bos_token_id=None, eos_token_id=None, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        base = GPT2LMHeadModel(cfg)
        lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=['c_attn', 'c_proj'], fan_in_fan_out=True,
                          use_rslora=True, task_type='CAUSAL_LM', init_lora_weights=False)
    base = base.float().eval()
    randomize(base, gen, 3.0)
    ids = torch.tensor([IDS])
    with torch.no_grad():
        base_logits = base(ids).logits[0]
    d = os.path.join(OUT, family)
    os.makedirs(d, exist_ok=True)
    base.save_pretrained(os.path.join(d, 'base'), safe_serialization=True)
    peft = get_peft_model(base, lora).eval()
    with torch.no_grad():  # larger B than PEFT's random init, so the adapter clearly matters
        for name, p in peft.named_parameters():
            if 'lora_B' in name:
                p.mul_(5.0)
    peft.save_pretrained(os.path.join(d, 'adapter'), safe_serialization=True)
    # reload as a user would, and take the logits from that
    fresh = AutoModelForCausalLM.from_pretrained(os.path.join(d, 'base'), dtype=torch.float32).eval()
    loaded = PeftModel.from_pretrained(fresh, os.path.join(d, 'adapter')).eval()
    with torch.no_grad():
        logits = loaded(ids).logits[0]
    assert (logits - base_logits).abs().max() > 1e-2
    for f in ('README.md',):
        p = os.path.join(d, 'adapter', f)
        if os.path.exists(p):
            os.remove(p)
    for root, _, files in os.walk(d):
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    with open(os.path.join(d, 'logits.json'), 'w') as f:
        json.dump({'ids': IDS, 'logits': rounded(logits), 'base_logits': rounded(base_logits)}, f)
        f.write('\n')
    print(family, 'max |logit|', logits.abs().max().item(), 'adapter effect', (logits - base_logits).abs().max().item())


def check(base_dir, adapter_dir, ids):
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    model = PeftModel.from_pretrained(model, adapter_dir).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    print(json.dumps(rounded(logits)))


ALL_TARGETS = {
    'llama': ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
    'gpt2': ['c_attn', 'c_proj', 'c_fc'],
}


def clean(d):
    p = os.path.join(d, 'README.md')
    if os.path.exists(p):
        os.remove(p)
    for root, _, files in os.walk(d):
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)


def adapter_key(name):
    """PEFT's parameter name -> the key save_pretrained writes (the adapter name dropped)."""
    return name.replace('.lora_A.default.', '.lora_A.').replace('.lora_B.default.', '.lora_B.')


# The base's matrices (dim >= 2) are halved for the gradient fixture: with the full gain-3 weights
# attention saturates and float32 itself (PyTorch's included) is only good to ~1e-4 on the q/k
# adapters' gradients; halved, float32 agrees with float64 to ~1e-5. A power of two: exact in float32.
BASE_SCALE = 0.5


def scaled_base(base_dir):
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(BASE_SCALE)
    return model


def make_grad(family):
    """Masked loss and adapter gradients of a padded batch, LoRA on every linear module."""
    d = os.path.join(OUT, family)
    base_dir = os.path.join(d, 'base')
    out = os.path.join(d, 'grad')
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(99 if family == 'llama' else 98)
    base = scaled_base(base_dir).eval()
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=ALL_TARGETS[family], task_type='CAUSAL_LM',
                      init_lora_weights=False, fan_in_fan_out=family == 'gpt2', use_rslora=family == 'gpt2')
    peft = get_peft_model(base, lora)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if 'lora_B' in name:
                p.mul_(5.0)
    peft.save_pretrained(os.path.join(out, 'adapter'), safe_serialization=True)
    clean(os.path.join(out, 'adapter'))

    # three examples of different lengths: prompt tokens and padding masked with -100
    lengths, prompts = [10, 14, 7], [4, 6, 3]
    T = max(lengths)
    V = base.config.vocab_size
    ids = torch.zeros((3, T), dtype=torch.long)
    labels = torch.full((3, T), -100, dtype=torch.long)
    for b, (n, p) in enumerate(zip(lengths, prompts)):
        row = torch.randint(1, V, (n,), generator=gen)
        ids[b, :n] = row
        labels[b, p:n] = row[p:]

    def loss_and_grads(dtype):
        model = PeftModel.from_pretrained(scaled_base(base_dir), os.path.join(out, 'adapter'), is_trainable=True).to(dtype)
        model.train()  # dropout 0 everywhere: train mode only turns on gradients
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        grads = {adapter_key(n): p.grad.detach().clone() for n, p in model.named_parameters() if 'lora_' in n}
        return loss.item(), grads

    loss64, grads64 = loss_and_grads(torch.float64)
    loss32, grads32 = loss_and_grads(torch.float32)
    assert abs(loss64 - loss32) < 1e-5 * abs(loss64), (loss64, loss32)
    worst32 = 0
    n_modules = len(ALL_TARGETS[family]) + (1 if family == 'gpt2' else 0)  # GPT-2's c_proj is in attn and mlp
    assert len(grads64) == 2 * n_modules * base.config.num_hidden_layers, sorted(grads64)
    for k, g in grads64.items():
        assert g.abs().max() > 0, k
        rel = (g - grads32[k].double()).norm() / g.norm()
        assert rel < 1e-4, (k, rel.item())
        worst32 = max(worst32, rel.item())
    save_file({k: g.float().contiguous() for k, g in sorted(grads64.items())}, os.path.join(out, 'grads.safetensors'), metadata={'format': 'pt'})
    with open(os.path.join(out, 'batch.json'), 'w') as f:
        json.dump({'input_ids': ids.tolist(), 'labels': labels.tolist(), 'lengths': lengths, 'loss': loss64, 'base_scale': BASE_SCALE,
                   'note': 'PEFT float64 over base weights (dim >= 2) times base_scale: mean cross-entropy over labels != -100 (shifted); grads of every lora tensor in grads.safetensors'}, f)
        f.write('\n')
    clean(out)
    print(family, 'grad: loss', loss64, 'tensors', len(grads64), 'PEFT float32 vs float64: loss diff', abs(loss64 - loss32), 'worst gradient rel. error', worst32)


def make_ours(family):
    """PEFT's logits for the adapter llm.ts saved (scripts/make-peft-ours-adapter.mjs)."""
    d = os.path.join(OUT, family)
    adapter = os.path.join(d, 'ours', 'adapter')
    base = AutoModelForCausalLM.from_pretrained(os.path.join(d, 'base'), dtype=torch.float32).eval()
    with torch.no_grad():
        base_logits = base(torch.tensor([IDS])).logits[0]
    model = PeftModel.from_pretrained(base, adapter).eval()
    n = sum(1 for name, _ in model.named_parameters() if 'lora_' in name)
    assert n == 2 * (len(ALL_TARGETS[family]) + (1 if family == 'gpt2' else 0)) * base.config.num_hidden_layers, n
    with torch.no_grad():
        logits = model(torch.tensor([IDS])).logits[0]
    assert (logits - base_logits).abs().max() > 1e-2
    with open(os.path.join(d, 'ours', 'logits.json'), 'w') as f:
        json.dump({'ids': IDS, 'logits': rounded(logits)}, f)
        f.write('\n')
    clean(os.path.join(d, 'ours'))
    print(family, 'ours: PEFT loaded', n, 'adapter tensors; adapter effect', (logits - base_logits).abs().max().item())


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--check':
        check(sys.argv[2], sys.argv[3], [int(x) for x in sys.argv[4].split(',')])
    else:
        what = sys.argv[1:] or ['peft', 'grad', 'ours']
        if 'ours' in what:
            root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
            subprocess.run(['node', os.path.join(root, 'scripts', 'make-peft-ours-adapter.mjs')], check=True, cwd=root)
        for family in ('llama', 'gpt2'):
            if 'peft' in what:
                make(family)
            if 'grad' in what:
                make_grad(family)
            if 'ours' in what:
                make_ours(family)
