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
"""
import json
import os
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
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


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--check':
        check(sys.argv[2], sys.argv[3], [int(x) for x in sys.argv[4].split(',')])
    else:
        make('llama')
        make('gpt2')
