"""TRL peer for bench/sft.ts: times Hugging Face TRL's SFTTrainer (plus PEFT for LoRA) on the same
Llama shape, examples, batch and sequence length as our side, and prints one JSON line.

    /tmp/venv-peft/bin/python bench/trl_sft.py --config '{"family":"llama","vocabSize":32000,...}' \
        --data /tmp/x/rows.bin --rows 64 --length 257 --batch-size 4 --mode full --warmup 2 --steps 5 \
        --threads 2 --loss-type nll --compile off

The config is our ModelConfig as JSON (camelCase keys, src/model/config.ts), built here as a
transformers LlamaForCausalLM (float32, SDPA attention) with the same shapes. --data holds `rows`
examples of `length` token ids (int32, little-endian, row-major) followed by their `rows x length`
loss-mask bytes (1 = trained token): the dataset is {input_ids, completion_mask}, which SFTTrainer
turns into labels with -100 on the untrained tokens (completion-only loss), exactly our mask.

Gradient checkpointing, on by default in TRL's SFTConfig (a memory saving that recomputes the
forward in the backward pass), is off unless --gradient-checkpointing on: its fastest setting.
The step is the Trainer's own (data collation, forward with TRL's loss and its token-accuracy /
entropy metrics, backward, clip_grad_norm_ 1.0, AdamW, scheduler); its time is the interval between
consecutive `on_step_end` callbacks, so everything the trainer does per step counts. Prints
{"ms_per_step": median of the timed steps, "tokens_per_sec": B*(length-1)*1000/median, ...}.
Tokens are counted as predicted positions (length - 1 per row), as on our side. cpu_ms_per_step
is the median CPU time (process_time, all threads) of the same steps.
"""
import argparse
import json
import sys
import time

import numpy as np
import torch

from trl_common import StepClock, llama_config, quiet_start, timing_fields, trainer_args


def build_model(cfg, mode, lora_r, lora_alpha, lora_dropout):
    from transformers import LlamaForCausalLM

    hf = llama_config(cfg, use_cache=False)
    model = LlamaForCausalLM(hf).to(torch.float32)
    peft_model = None
    if mode == 'lora':
        from peft import LoraConfig

        peft_model = LoraConfig(
            r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, bias='none', task_type='CAUSAL_LM',
            target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
        )
    return model, peft_model


def stand_in_tokenizer():
    """A tokenizer for SFTTrainer's pad-token lookup only (the data is already token ids): <unk>=0 pads."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {'<unk>': 0, '<s>': 1, '</s>': 2}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab, unk_token='<unk>')),
                                   unk_token='<unk>', bos_token='<s>', eos_token='</s>', pad_token='<unk>')


def read_rows(path, rows, length):
    raw = np.fromfile(path, dtype=np.uint8)
    want = rows * length * 5
    if raw.size != want:
        sys.exit(f'{path}: {raw.size} bytes, expected {want} for {rows} rows of {length} tokens')
    ids = raw[: rows * length * 4].view('<i4').reshape(rows, length)
    mask = raw[rows * length * 4:].reshape(rows, length)
    return ids.tolist(), mask.astype(np.int64).tolist()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--config', required=True, help='ModelConfig as JSON')
    ap.add_argument('--data', required=True)
    ap.add_argument('--rows', type=int, required=True)
    ap.add_argument('--length', type=int, required=True, help='token ids per example (positions + 1)')
    ap.add_argument('--batch-size', type=int, required=True)
    ap.add_argument('--mode', choices=['full', 'lora'], required=True)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--threads', type=int, default=0, help='torch.set_num_threads (0: leave torch\'s default)')
    ap.add_argument('--loss-type', default='chunked_nll', help="SFTConfig.loss_type: 'nll' or 'chunked_nll' (TRL's default)")
    ap.add_argument('--compile', choices=['off', 'on'], default='off', help='TrainingArguments.torch_compile')
    ap.add_argument('--lr', type=float, default=2e-5)
    ap.add_argument('--beta1', type=float, default=0.9)
    ap.add_argument('--beta2', type=float, default=0.999)
    ap.add_argument('--weight-decay', type=float, default=0.0)
    ap.add_argument('--grad-clip', type=float, default=1.0)
    ap.add_argument('--lora-r', type=int, default=8)
    ap.add_argument('--lora-alpha', type=float, default=16)
    ap.add_argument('--lora-dropout', type=float, default=0.05)
    ap.add_argument('--gradient-checkpointing', choices=['off', 'on'], default='off',
                    help="SFTConfig.gradient_checkpointing (TRL's default is on: it recomputes activations in the backward pass, trading time for memory)")
    ap.add_argument('--bf16', action='store_true', help='train in bfloat16 autocast (informational; needs AMX / AVX512-BF16)')
    ap.add_argument('--seed', type=int, default=1337)
    a = ap.parse_args()

    quiet_start(a)
    import transformers
    import trl
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    cfg = json.loads(a.config)
    ids, mask = read_rows(a.data, a.rows, a.length)
    dataset = Dataset.from_dict({'input_ids': ids, 'completion_mask': mask})
    model, peft_config = build_model(cfg, a.mode, a.lora_r, a.lora_alpha, a.lora_dropout)

    total = a.warmup + a.steps
    if total * a.batch_size > a.rows:
        sys.exit(f'{total} steps of {a.batch_size} need {total * a.batch_size} rows, the data has {a.rows}')
    clock = StepClock()
    args = SFTConfig(**trainer_args(
        a, 'trl-sft-bench-', total, max_length=a.length, packing=False, completion_only_loss=True, loss_type=a.loss_type,
        bf16=a.bf16, dataset_num_proc=None,
    ))
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=stand_in_tokenizer(),
                         peft_config=peft_config, callbacks=[clock.callback()])
    params = sum(p.numel() for p in trainer.model.parameters())
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    t0 = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - t0
    steps, cpu_steps = clock.steps(total)
    timing = timing_fields(steps, cpu_steps, a.warmup)
    positions = a.batch_size * (a.length - 1)
    print(json.dumps({
        **timing,
        'tokens_per_sec': positions * 1000 / timing['ms_per_step'],
        'threads': torch.get_num_threads(),
        'loss_type': args.loss_type,
        'compile': a.compile,
        'gradient_checkpointing': args.gradient_checkpointing,
        'optim': str(args.optim),
        'bf16': a.bf16,
        'params': params,
        'trainable': trainable,
        'train_loss': result.training_loss,
        'wall_s': wall,
        'torch_version': torch.__version__,
        'transformers_version': transformers.__version__,
        'trl_version': trl.__version__,
        'peft_version': __import__('peft').__version__ if a.mode == 'lora' else None,
        'attn': getattr(model.config, '_attn_implementation', None),
    }))


if __name__ == '__main__':
    main()
