"""What bench/trl_sft.py and bench/trl_align.py share: the Llama shape of one of our ModelConfigs as
a transformers config, the trainer arguments both sides agree on, and step times taken from the
Trainer's own callbacks (the interval between consecutive `on_step_end` calls, so everything the
trainer does in a step counts)."""
import statistics
import sys
import tempfile
import time


def llama_config(cfg, **extra):
    """Our ModelConfig (camelCase JSON) as a float32 LlamaConfig with SDPA attention."""
    from transformers import LlamaConfig

    if cfg['family'] != 'llama':
        sys.exit('only llama configs are supported')
    hf = LlamaConfig(
        vocab_size=cfg['vocabSize'], hidden_size=cfg['nEmbd'], intermediate_size=cfg['hiddenDim'],
        num_hidden_layers=cfg['nLayer'], num_attention_heads=cfg['nHead'], num_key_value_heads=cfg['nKvHead'],
        max_position_embeddings=cfg['blockSize'], rms_norm_eps=cfg['normEps'], rope_theta=cfg['ropeTheta'],
        tie_word_embeddings=cfg['tiedEmbeddings'], attention_bias=False, mlp_bias=False,
        attention_dropout=0.0, pad_token_id=0, bos_token_id=1, eos_token_id=2, **extra,
    )
    hf._attn_implementation = 'sdpa'
    return hf


def trainer_args(a, prefix, max_steps, **extra):
    """TrainingArguments fields of a timed run: constant lr, AdamW betas, clip, no saving or logging, CPU."""
    return dict(
        output_dir=tempfile.mkdtemp(prefix=prefix), per_device_train_batch_size=a.batch_size, gradient_accumulation_steps=1,
        max_steps=max_steps, learning_rate=a.lr, lr_scheduler_type='constant', warmup_steps=0,
        adam_beta1=a.beta1, adam_beta2=a.beta2, weight_decay=a.weight_decay, max_grad_norm=a.grad_clip,
        logging_steps=10**9, save_strategy='no', eval_strategy='no', report_to=[], disable_tqdm=True,
        use_cpu=True, dataloader_num_workers=0, seed=a.seed, data_seed=a.seed,
        torch_compile=a.compile == 'on', gradient_checkpointing=a.gradient_checkpointing == 'on', **extra,
    )


class StepClock:
    """callback() goes to the trainer; after train(), steps() gives each step's wall and CPU ms."""

    def __init__(self):
        self.ends, self.cpu_ends = [], []

    def callback(self):
        from transformers import TrainerCallback

        clock = self

        class StepTimes(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                clock.mark()

            def on_step_end(self, args, state, control, **kw):
                clock.mark()

        return StepTimes()

    def mark(self):
        self.ends.append(time.perf_counter())
        self.cpu_ends.append(time.process_time())

    def steps(self, expected, group=1):
        """Wall and CPU ms of each run of `group` consecutive steps (an RL iteration); exits unless `expected` steps ran."""
        wall = [(self.ends[i + 1] - self.ends[i]) * 1000 for i in range(len(self.ends) - 1)]
        cpu = [(self.cpu_ends[i + 1] - self.cpu_ends[i]) * 1000 for i in range(len(self.cpu_ends) - 1)]
        if len(wall) != expected:
            sys.exit(f'expected {expected} step times, got {len(wall)}')
        return ([sum(wall[i:i + group]) for i in range(0, len(wall), group)],
                [sum(cpu[i:i + group]) for i in range(0, len(cpu), group)])


def timing_fields(wall, cpu, warmup):
    """The JSON fields of the timed steps: median wall and CPU ms (warm-up excluded), every step's times."""
    return {
        'ms_per_step': statistics.median(wall[warmup:]),
        'step_ms': [round(t, 1) for t in wall],
        'cpu_ms_per_step': statistics.median(cpu[warmup:]),
        'cpu_step_ms': [round(t, 1) for t in cpu],
        'warmup': warmup,
    }


def quiet_start(a):
    """Warnings and transformers' logging off, torch threads (--threads; 0 leaves torch's default), seed."""
    import os
    import warnings

    import torch
    import transformers

    warnings.filterwarnings('ignore')
    os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
    os.environ.setdefault('TRL_EXPERIMENTAL_SILENCE', '1')
    transformers.logging.set_verbosity_error()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
