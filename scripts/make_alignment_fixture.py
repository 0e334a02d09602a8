"""Make test/fixtures/alignment/: what TRL and transformers compute for the alignment losses, for
test/align/*.test.ts to compare with (npm test never needs Python).

    python3 -m venv /tmp/venv-peft
    /tmp/venv-peft/bin/pip install --index-url file:///opt/pypi/simple torch transformers trl safetensors
    /tmp/venv-peft/bin/python scripts/make_alignment_fixture.py

(Made with torch 2.13.0+cpu, transformers 5.18.0, trl 1.13.0.)

losses.json, on fixed float64 tensors:
- reward: TRL RewardTrainer.compute_loss's formula (trl/trainer/reward_trainer.py: -logsigmoid(r_c - r_r
  [- margin]).mean() [+ c * mean((r_c + r_r)^2)]) and its gradients;
- dpo: TRL DPOTrainer._compute_loss's sigmoid, hinge and ipo losses (trl/trainer/dpo_trainer.py; ipo divides
  each log-ratio by its completion length) and gradients with respect to the policy log-probabilities;
- ppo: GAE, masked whitening and the clipped policy / value losses with TRL's formulas (trl/trainer/utils.py
  masked_mean / masked_var / masked_whiten where present; TRL 1.13 no longer ships its PPOTrainer, so the
  PPO formulas are those of its last release, as quoted in shared/research/post-training-anchors.md §1e).

--check-reward-model DIR ROWS: transformers' AutoModelForSequenceClassification scores of token-id rows for a
reward model directory written by `llmts reward export` (checked by hand against `llmts reward score`; the
committed side of that check is the exported file layout, test/align/model-parity.test.ts).

llama/: a tiny Llama (base/ saved by transformers, score.safetensors holding a reward head) and, for a batch
of three preference pairs given as token ids with their completion masks:
- the reward model's scores as LlamaForSequenceClassification computes them (last non-pad token), the
  Bradley-Terry loss and the gradients of score.weight and two trunk tensors;
- the DPO sigmoid loss of the policy against given reference log-probabilities, with the per-answer log
  probabilities from TRL's selective_log_softmax, and the gradients of three tensors.
"""
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

try:
    from trl.trainer.utils import selective_log_softmax
except ImportError:  # older TRL
    def selective_log_softmax(logits, index):
        return torch.gather(logits.log_softmax(-1), -1, index.unsqueeze(-1)).squeeze(-1)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'alignment')
torch.set_default_dtype(torch.float64)


def flat(t):
    return [float(f'{v:.10g}') for v in t.detach().reshape(-1).tolist()]


# ---- losses on fixed tensors --------------------------------------------------------------------

def reward_case(gen, P, margin, center):
    rc = torch.randn(P, generator=gen).requires_grad_()
    rr = torch.randn(P, generator=gen).requires_grad_()
    m = torch.rand(P, generator=gen) if margin else None
    loss = -F.logsigmoid(rc - rr - m).mean() if margin else -F.logsigmoid(rc - rr).mean()
    if center:
        loss = loss + center * torch.mean((rc + rr) ** 2)
    loss.backward()
    return {'chosen': flat(rc), 'rejected': flat(rr), 'margin': flat(m) if margin else None, 'center': center,
            'loss': loss.item(), 'dchosen': flat(rc.grad), 'drejected': flat(rr.grad),
            'accuracy': (rc > rr).double().mean().item(), 'margin_mean': (rc - rr).mean().item()}


def dpo_case(gen, P, loss_type, beta):
    pc = (torch.randn(P, generator=gen) * 5 - 20).requires_grad_()
    pr = (torch.randn(P, generator=gen) * 5 - 20).requires_grad_()
    rc = torch.randn(P, generator=gen) * 5 - 20
    rr = torch.randn(P, generator=gen) * 5 - 20
    nc = torch.randint(1, 12, (P,), generator=gen).double()
    nr = torch.randint(1, 12, (P,), generator=gen).double()
    chosen_logratios, rejected_logratios = pc - rc, pr - rr
    delta = chosen_logratios - rejected_logratios
    if loss_type == 'sigmoid':
        per = -F.logsigmoid(beta * delta)
    elif loss_type == 'hinge':
        per = torch.relu(1 - beta * delta)
    else:  # ipo
        per = (chosen_logratios / nc.clamp(min=1) - rejected_logratios / nr.clamp(min=1) - 1 / (2 * beta)) ** 2
    loss = per.mean()
    loss.backward()
    cr, rrw = beta * chosen_logratios.detach(), beta * rejected_logratios.detach()
    return {'type': loss_type, 'beta': beta, 'policy_chosen': flat(pc), 'policy_rejected': flat(pr),
            'ref_chosen': flat(rc), 'ref_rejected': flat(rr), 'chosen_lengths': flat(nc), 'rejected_lengths': flat(nr),
            'loss': loss.item(), 'dchosen': flat(pc.grad), 'drejected': flat(pr.grad),
            'metrics': {'rewards/chosen': cr.mean().item(), 'rewards/rejected': rrw.mean().item(),
                        'rewards/accuracies': (cr > rrw).double().mean().item(), 'rewards/margins': (cr - rrw).mean().item()}}


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum()


def masked_whiten(x, mask, shift_mean=True):
    mean = masked_mean(x, mask)
    centered = x - mean
    var = masked_mean(centered ** 2, mask)
    n = mask.sum()
    var = var * n / (n - 1)  # unbiased, as TRL's masked_var
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


def ppo_case(gen, B, T, gamma, lam, clip, clip_v):
    lengths = torch.randint(2, T + 1, (B,), generator=gen)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).double()
    rewards = torch.randn(B, T, generator=gen) * 0.1 * mask
    values = torch.randn(B, T, generator=gen) * mask
    advs = []
    last = torch.zeros(B)
    for t in reversed(range(T)):
        nxt = values[:, t + 1] if t < T - 1 else 0.0
        delta = rewards[:, t] + gamma * nxt - values[:, t]
        last = delta + gamma * lam * last
        advs.append(last)
    adv = torch.stack(advs[::-1], dim=1)
    returns = adv + values
    white = masked_whiten(adv, mask) * mask
    old_logp = torch.randn(B, T, generator=gen) * 0.5 - 2
    logp = (old_logp + torch.randn(B, T, generator=gen) * 0.3).requires_grad_()
    ratio = torch.exp(logp - old_logp)
    pg = torch.max(-white * ratio, -white * torch.clamp(ratio, 1 - clip, 1 + clip))
    pg_loss = masked_mean(pg, mask)
    pg_loss.backward()
    vpred = (values + torch.randn(B, T, generator=gen) * 0.4).requires_grad_()
    vclip = torch.clamp(vpred, values - clip_v, values + clip_v)
    vf = 0.5 * masked_mean(torch.max((vpred - returns) ** 2, (vclip - returns) ** 2), mask)
    vf.backward()
    return {'B': B, 'T': T, 'gamma': gamma, 'lam': lam, 'clip': clip, 'clip_v': clip_v, 'mask': flat(mask),
            'rewards': flat(rewards), 'values': flat(values), 'advantages': flat(adv), 'returns': flat(returns),
            'whitened': flat(white), 'old_logp': flat(old_logp), 'logp': flat(logp), 'pg_loss': pg_loss.item(),
            'dlogp': flat(logp.grad), 'vpred': flat(vpred), 'vf_loss': vf.item(), 'dvpred': flat(vpred.grad)}


def losses():
    gen = torch.Generator().manual_seed(7)
    out = {
        'reward': [reward_case(gen, 6, False, None), reward_case(gen, 5, True, None), reward_case(gen, 7, True, 0.01)],
        'dpo': [dpo_case(gen, 6, t, b) for t, b in (('sigmoid', 0.1), ('sigmoid', 0.5), ('hinge', 0.1), ('ipo', 0.1), ('ipo', 0.4))],
        'ppo': [ppo_case(gen, 3, 7, 1.0, 0.95, 0.2, 0.2), ppo_case(gen, 4, 5, 0.99, 0.9, 0.1, 0.3)],
    }
    with open(os.path.join(OUT, 'losses.json'), 'w') as f:
        json.dump(out, f)
        f.write('\n')


# ---- a tiny Llama: reward model and DPO, gradients ---------------------------------------------

PAD = 0
# three pairs: (prompt ids, chosen answer ids, rejected answer ids); answers include the end token 2
PAIRS = [
    ([1, 5, 9, 14], [7, 22, 3, 2], [30, 2]),
    ([1, 11, 4], [8, 8, 19, 25, 2], [13, 21, 2]),
    ([1, 17, 6, 27, 12], [33, 2], [10, 31, 18, 2]),
]
WATCH = ['model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight', 'model.layers.1.mlp.down_proj.weight']


def rows():
    """(2P, T) ids right-padded with PAD, completion masks, chosen rows first."""
    seqs = [p + c for p, c, _ in PAIRS] + [p + r for p, _, r in PAIRS]
    masks = [[0] * len(p) + [1] * len(c) for p, c, _ in PAIRS] + [[0] * len(p) + [1] * len(r) for p, _, r in PAIRS]
    T = max(len(s) for s in seqs)
    ids = torch.tensor([s + [PAD] * (T - len(s)) for s in seqs])
    mask = torch.tensor([m + [0] * (T - len(m)) for m in masks])
    return ids, mask


def tiny_llama():
    gen = torch.Generator().manual_seed(99)
    cfg = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=32, rms_norm_eps=1e-5, rope_theta=10000.0,
                      tie_word_embeddings=False, attention_bias=False, mlp_bias=False, hidden_act='silu', pad_token_id=PAD)
    lm = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for name, p in lm.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 2.0 / p.shape[-1] ** 0.5)
            else:
                p.copy_(1 + torch.randn(p.shape, generator=gen) * 0.1)
    return cfg, lm.double().eval(), gen


def model_cases():
    d = os.path.join(OUT, 'llama')
    os.makedirs(d, exist_ok=True)
    cfg, lm, gen = tiny_llama()
    lm.float().save_pretrained(os.path.join(d, 'base'), safe_serialization=True)
    lm = lm.double()
    ids, mask = rows()
    P = len(PAIRS)

    # reward model: the same trunk under LlamaForSequenceClassification (num_labels 1)
    cfg.num_labels = 1  # a scalar reward (the default is 2 labels)
    rm = LlamaForSequenceClassification(cfg).double().eval()
    missing, unexpected = rm.load_state_dict({k: v for k, v in lm.state_dict().items() if k != 'lm_head.weight'}, strict=False)
    assert missing == ['score.weight'], missing
    with torch.no_grad():
        rm.score.weight.copy_(torch.randn(rm.score.weight.shape, generator=gen) * 0.5)
    save_file({'score.weight': rm.score.weight.detach().float().contiguous()}, os.path.join(d, 'score.safetensors'))
    # the fixture stores the float32 weights; compute from those exact values
    for p in list(rm.parameters()) + list(lm.parameters()):
        p.data = p.data.float().double()
    scores = rm(input_ids=ids).logits[:, 0]  # read at the last non-pad token of each row
    rc, rr = scores[:P], scores[P:]
    rm_loss = -F.logsigmoid(rc - rr).mean()
    rm.zero_grad()
    rm_loss.backward()
    rm_params = dict(rm.named_parameters())
    reward = {'scores': flat(scores), 'loss': rm_loss.item(), 'state_dict_keys': sorted(rm.state_dict().keys()),
              'grads': {n: flat(rm_params[n].grad) for n in ['score.weight'] + WATCH}}

    # DPO: policy = the causal LM; reference log-probs fixed numbers
    lm.zero_grad()
    logits = lm(input_ids=ids).logits
    per_token = selective_log_softmax(logits[:, :-1], ids[:, 1:])
    per_token = per_token.masked_fill(mask[:, 1:] == 0, 0.0)
    logps = per_token.sum(1)
    ref = logps.detach() + torch.randn(2 * P, generator=gen) * 2
    beta = 0.1
    delta = (logps[:P] - ref[:P]) - (logps[P:] - ref[P:])
    dpo_loss = -F.logsigmoid(beta * delta).mean()
    dpo_loss.backward()
    lm_params = dict(lm.named_parameters())
    dpo = {'beta': beta, 'logps': flat(logps), 'ref_logps': flat(ref), 'loss': dpo_loss.item(),
           'grads': {n: flat(lm_params[n].grad) for n in WATCH + ['lm_head.weight']}}

    for root, _, files in os.walk(d):
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    with open(os.path.join(d, 'cases.json'), 'w') as f:
        json.dump({'pad': PAD, 'pairs': PAIRS, 'reward': reward, 'dpo': dpo}, f)
        f.write('\n')
    print('reward loss', reward['loss'], 'scores', reward['scores'])
    print('dpo loss', dpo['loss'], 'logps', dpo['logps'])


def check_reward_model(d, rows):
    """Scores of token-id rows by a reward model directory (e.g. one `llmts reward export` wrote)."""
    from transformers import AutoModelForSequenceClassification
    m = AutoModelForSequenceClassification.from_pretrained(d, dtype=torch.float32).eval()
    T = max(len(r) for r in rows)
    pad = m.config.pad_token_id
    ids = torch.tensor([r + [pad] * (T - len(r)) for r in rows])
    with torch.no_grad():
        print(type(m).__name__, json.dumps([round(x, 5) for x in m(input_ids=ids).logits[:, 0].tolist()]))


if __name__ == '__main__':
    import sys
    if len(sys.argv) > 1 and sys.argv[1] == '--check-reward-model':
        # python scripts/make_alignment_fixture.py --check-reward-model DIR '[[3,5,7],[8,6,4,2]]'
        check_reward_model(sys.argv[2], json.loads(sys.argv[3]))
    else:
        os.makedirs(OUT, exist_ok=True)
        losses()
        model_cases()
