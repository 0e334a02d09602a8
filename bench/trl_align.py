"""TRL peer for bench/align.ts: times Hugging Face TRL's RewardTrainer, DPOTrainer, GRPOTrainer or
RLOOTrainer on the same Llama shape, data, batch and lengths as our side, and prints one JSON line.

    /tmp/venv-peft/bin/python bench/trl_align.py --task reward --config '{"family":"llama",...}' \
        --data /tmp/x/pairs.bin --pairs 16 --prompt-len 64 --answer-len 63 --batch-size 4 \
        --warmup 1 --steps 3 --threads 2 --compile off

The config is our ModelConfig as JSON (camelCase keys, src/model/config.ts), built here as a
transformers Llama model (float32, SDPA attention) of the same shapes: LlamaForSequenceClassification
(num_labels 1, the reward model) for --task reward, LlamaForCausalLM otherwise.

Data (int32, little-endian, written by bench/align.ts):
  reward, dpo   --pairs rows of prompt ids (prompt-len), then the same number of chosen answers
                (answer-len), then rejected answers (answer-len). Every answer is followed by the
                EOS id 2: RewardTrainer gets {chosen_ids, rejected_ids} = prompt + answer + EOS;
                DPOTrainer gets text that its own tokenization turns into the same ids (a word-level
                stand-in tokenizer whose word `w<id>` is token <id>; DPOTrainer appends the EOS).
  grpo, rloo    --prompts rows of prompt ids (prompt-len), given as text of the same stand-in words.
                Each prompt is sampled --group times, --new-tokens at most, at --temperature; the
                reward is a trivial function of the completion (the share of its words whose id is
                even), the same on our side.

The step is the trainer's own (collation, forward, loss and its metrics, backward, clip_grad_norm_,
AdamW, scheduler; for GRPO/RLOO the generation with transformers' generate and its KV cache, the
old-policy log-probabilities, the reward, the advantages); its time is the interval between
consecutive `on_step_end` callbacks. GRPO/RLOO run `--rollout / --batch-size` optimizer steps per
generation (steps_per_generation), one pass (num_iterations 1), so an iteration (rollout + update)
is that many consecutive steps. With --precompute-ref on (DPO), TRL's precompute of the reference
log-probabilities over the data set runs in the trainer's constructor; its time is reported
(precompute_ms) so that the driver can add its share to each step. Gradient checkpointing (on by
default in TRL's configs) is off unless --gradient-checkpointing on; bf16 (GRPO's default) is off.
"""
import argparse
import copy
import json
import sys
import time

import numpy as np
import torch

from trl_common import StepClock, llama_config, quiet_start, timing_fields, trainer_args

EOS_ID = 2


def stand_in_tokenizer(vocab_size):
    """Word-level: 'w<id>' is token <id> (3..), <unk>=0 pads, <s>=1, </s>=2; words split on whitespace."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    vocab = {'<unk>': 0, '<s>': 1, '</s>': 2}
    for i in range(3, vocab_size):
        vocab[f'w{i}'] = i
    tok = Tokenizer(WordLevel(vocab, unk_token='<unk>'))
    tok.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token='<unk>', bos_token='<s>', eos_token='</s>', pad_token='<unk>')


def words(ids):
    return ' '.join(f'w{int(i)}' for i in ids)


def even_share(text):
    """The trivial programmatic reward: the share of the completion's words whose token id is even."""
    ws = [w for w in text.split() if w.startswith('w') and w[1:].isdigit()]
    return sum(1 for w in ws if int(w[1:]) % 2 == 0) / max(len(ws), 1)


def read_ints(path, n):
    raw = np.fromfile(path, dtype='<i4')
    if raw.size != n:
        sys.exit(f'{path}: {raw.size} int32 values, expected {n}')
    return raw


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--task', choices=['reward', 'dpo', 'grpo', 'rloo'], required=True)
    ap.add_argument('--config', required=True, help='ModelConfig as JSON')
    ap.add_argument('--data', required=True)
    ap.add_argument('--rows', type=int, required=True, help='pairs (reward, dpo) or prompts (grpo, rloo) in --data')
    ap.add_argument('--prompt-len', type=int, required=True)
    ap.add_argument('--answer-len', type=int, default=0, help='answer tokens before the EOS (reward, dpo)')
    ap.add_argument('--batch-size', type=int, required=True, help='pairs per step (reward, dpo) or completions per step (grpo, rloo)')
    ap.add_argument('--group', type=int, default=4, help='completions per prompt (grpo, rloo)')
    ap.add_argument('--rollout', type=int, default=16, help='completions per generation (grpo, rloo)')
    ap.add_argument('--new-tokens', type=int, default=32)
    ap.add_argument('--temperature', type=float, default=0.7)
    ap.add_argument('--beta', type=float, default=None, help='DPO beta (0.1) / GRPO, RLOO KL coefficient (0)')
    ap.add_argument('--warmup', type=int, default=1, help='untimed steps (reward, dpo) or iterations (grpo, rloo)')
    ap.add_argument('--steps', type=int, default=3, help='timed steps (reward, dpo) or iterations (grpo, rloo)')
    ap.add_argument('--threads', type=int, default=0, help="torch.set_num_threads (0: leave torch's default)")
    ap.add_argument('--compile', choices=['off', 'on'], default='off', help='TrainingArguments.torch_compile')
    ap.add_argument('--precompute-ref', choices=['off', 'on'], default='off', help='DPOConfig.precompute_ref_log_probs')
    ap.add_argument('--gradient-checkpointing', choices=['off', 'on'], default='off')
    ap.add_argument('--lr', type=float, default=1e-5)
    ap.add_argument('--beta1', type=float, default=0.9)
    ap.add_argument('--beta2', type=float, default=0.999)
    ap.add_argument('--weight-decay', type=float, default=0.0)
    ap.add_argument('--grad-clip', type=float, default=1.0)
    ap.add_argument('--seed', type=int, default=1337)
    a = ap.parse_args()

    quiet_start(a)
    import transformers
    import trl
    from datasets import Dataset

    cfg = json.loads(a.config)
    tokenizer = stand_in_tokenizer(cfg['vocabSize'])
    rl = a.task in ('grpo', 'rloo')
    if rl:
        if a.rollout % a.batch_size or a.rollout % a.group:
            sys.exit(f'--rollout {a.rollout} must be a multiple of --batch-size {a.batch_size} and --group {a.group}')
        steps_per_iter = a.rollout // a.batch_size
        prompts_per_iter = a.rollout // a.group
        total_iters = a.warmup + a.steps
        if total_iters * prompts_per_iter > a.rows:
            sys.exit(f'{total_iters} iterations of {prompts_per_iter} prompts need {total_iters * prompts_per_iter}, the data has {a.rows}')
        max_steps = total_iters * steps_per_iter
    else:
        steps_per_iter = 1
        max_steps = a.warmup + a.steps
        if max_steps * a.batch_size > a.rows:
            sys.exit(f'{max_steps} steps of {a.batch_size} pairs need {max_steps * a.batch_size}, the data has {a.rows}')

    clock = StepClock()
    common = trainer_args(a, f'trl-{a.task}-bench-', max_steps, bf16=False)
    precompute_ms = 0.0
    if a.task in ('reward', 'dpo'):
        n, lp, la = a.rows, a.prompt_len, a.answer_len
        flat = read_ints(a.data, n * lp + 2 * n * la)
        prompt = flat[: n * lp].reshape(n, lp)
        chosen = flat[n * lp: n * (lp + la)].reshape(n, la)
        rejected = flat[n * (lp + la):].reshape(n, la)
        if a.task == 'reward':
            from transformers import LlamaForSequenceClassification
            from trl import RewardConfig, RewardTrainer

            eos = np.full((n, 1), EOS_ID, dtype=np.int32)
            dataset = Dataset.from_dict({
                'chosen_ids': np.concatenate([prompt, chosen, eos], 1).tolist(),
                'rejected_ids': np.concatenate([prompt, rejected, eos], 1).tolist(),
            })
            model = LlamaForSequenceClassification(llama_config(cfg, num_labels=1, use_cache=False)).to(torch.float32)
            args = RewardConfig(**common, max_length=lp + la + 1, dataset_num_proc=None)
            trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=[clock.callback()])
        else:
            from transformers import LlamaForCausalLM
            from trl import DPOConfig, DPOTrainer

            # text that the stand-in tokenizer turns back into the ids; answers end in a space so that
            # DPOTrainer's appended '</s>' is a word of its own (the EOS id)
            dataset = Dataset.from_dict({
                'prompt': [words(p) for p in prompt],
                'chosen': [' ' + words(c) + ' ' for c in chosen],
                'rejected': [' ' + words(r) + ' ' for r in rejected],
            })
            model = LlamaForCausalLM(llama_config(cfg, use_cache=False)).to(torch.float32)
            ref = copy.deepcopy(model)
            for p in ref.parameters():
                p.requires_grad_(False)
            args = DPOConfig(**common, max_length=lp + la + 1, beta=0.1 if a.beta is None else a.beta,
                             precompute_ref_log_probs=a.precompute_ref == 'on', dataset_num_proc=None)
            original = DPOTrainer._precompute_ref_logps

            def timed_precompute(self, *args_, **kw):
                nonlocal precompute_ms
                t0 = time.perf_counter()
                out = original(self, *args_, **kw)
                precompute_ms += (time.perf_counter() - t0) * 1000
                return out

            DPOTrainer._precompute_ref_logps = timed_precompute
            trainer = DPOTrainer(model=model, ref_model=None if a.precompute_ref == 'on' else ref, args=args,
                                 train_dataset=dataset, processing_class=tokenizer, callbacks=[clock.callback()])
            # the dataset must tokenise back to our ids
            row = trainer.train_dataset[0]
            want = prompt[0].tolist() + chosen[0].tolist() + [EOS_ID]
            if row['prompt_ids'] + row['chosen_ids'] != want:
                sys.exit(f"bench/trl_align.py: the stand-in tokenizer gave {row['prompt_ids'][:5]}+{row['chosen_ids'][-5:]}, expected {want[:5]}..{want[-5:]}")
    else:
        from transformers import LlamaForCausalLM

        flat = read_ints(a.data, a.rows * a.prompt_len)
        prompts = flat.reshape(a.rows, a.prompt_len)
        dataset = Dataset.from_dict({'prompt': [words(p) for p in prompts]})
        model = LlamaForCausalLM(llama_config(cfg, use_cache=True)).to(torch.float32)

        def reward_even(completions, **kw):
            return [even_share(c) for c in completions]

        rl_common = dict(
            num_generations=a.group, steps_per_generation=steps_per_iter, num_iterations=1,
            max_completion_length=a.new_tokens, temperature=a.temperature, top_p=1.0, top_k=0,
            beta=0.0 if a.beta is None else a.beta, shuffle_dataset=False,
            generation_kwargs={'use_cache': True},
        )
        if a.task == 'grpo':
            from trl import GRPOConfig, GRPOTrainer

            args = GRPOConfig(**common, **rl_common)
            trainer = GRPOTrainer(model=model, reward_funcs=reward_even, args=args, train_dataset=dataset,
                                  processing_class=tokenizer, callbacks=[clock.callback()])
        else:
            from trl import RLOOConfig, RLOOTrainer

            args = RLOOConfig(**common, **rl_common)
            trainer = RLOOTrainer(model=model, reward_funcs=reward_even, args=args, train_dataset=dataset,
                                  processing_class=tokenizer, callbacks=[clock.callback()])

    params = sum(p.numel() for p in trainer.model.parameters())
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    t0 = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - t0
    iters, cpu_iters = clock.steps(max_steps, steps_per_iter)  # an iteration: steps_per_iter consecutive steps (1 for reward/dpo)
    print(json.dumps({
        **timing_fields(iters, cpu_iters, a.warmup),
        'precompute_ms': precompute_ms,
        'threads': torch.get_num_threads(),
        'compile': a.compile,
        'precompute_ref': a.precompute_ref,
        'gradient_checkpointing': args.gradient_checkpointing,
        'optim': str(args.optim),
        'params': params,
        'trainable': trainable,
        'train_loss': result.training_loss,
        'wall_s': wall,
        'torch_version': torch.__version__,
        'transformers_version': transformers.__version__,
        'trl_version': trl.__version__,
        'attn': getattr(model.config, '_attn_implementation', None),
    }))


if __name__ == '__main__':
    main()
