"""Make test/fixtures/post-training-ops.json: PyTorch's values and gradients for the ops the
post-training losses use (test/tensor/post-training-ops.test.ts compares ours with them).

    python3 -m venv /tmp/venv-torch && /tmp/venv-torch/bin/pip install torch
    /tmp/venv-torch/bin/python scripts/make_post_training_ops_fixture.py

(Tested with torch 2.13.0+cpu.) Everything runs in float64 on small inputs from a seeded
generator; each case stores its inputs, the output and the gradient of sum(output * R) with
respect to every differentiable input, for a fixed random R of the output's shape (a scalar
output gets R = 1). Inputs include exact ties (minimum/maximum) and values sitting exactly on
clamp's bounds, so the fixture pins PyTorch's conventions at the kinks; no NaN or Infinity (JSON
has none), those are tested in TypeScript against the documented rules.
"""
import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(0)
gen = torch.Generator().manual_seed(20240611)
D = torch.float64
IGNORE = -100


def randn(*shape, std=1.0):
    return torch.randn(*shape, generator=gen, dtype=D) * std


def flat(t):
    return t.detach().reshape(-1).tolist()


def case(name, inputs, fn, extra=None):
    """inputs: dict name -> tensor (float tensors get gradients); fn(**inputs) -> output."""
    leaves = {}
    for k, v in inputs.items():
        leaves[k] = v.clone().requires_grad_(True) if v.is_floating_point() else v
    out = fn(**leaves)
    R = torch.ones((), dtype=D) if out.dim() == 0 else randn(*out.shape)
    (out * R).sum().backward()
    entry = {
        "name": name,
        "inputs": {k: {"shape": list(v.shape), "data": flat(v)} for k, v in inputs.items()},
        "R": flat(R),
        "out": {"shape": list(out.shape), "data": flat(out)},
        "grads": {k: flat(v.grad) for k, v in leaves.items() if v.is_floating_point() and v.grad is not None},
    }
    if extra:
        entry.update(extra)
    return entry


def main():
    cases = []
    # ---- cross-entropy, every reduction, with ignored rows; logits (2, 3, 5) ----
    logits = randn(2, 3, 5, std=2.0)
    targets = torch.tensor([[2, IGNORE, 0], [4, 4, IGNORE]])
    for reduction in ("mean", "sum", "none"):
        cases.append(case(f"crossEntropy {reduction}", {"logits": logits, "targets": targets},
                          lambda logits, targets, r=reduction: F.cross_entropy(
                              logits.reshape(-1, 5), targets.reshape(-1), ignore_index=IGNORE,
                              reduction=r).reshape(() if r != "none" else (2, 3)),
                          {"reduction": reduction}))

    # ---- log-softmax + gather, ignored rows give 0 ----
    def gather(logits, targets):
        lp = torch.log_softmax(logits, -1)
        mask = targets != IGNORE
        picked = lp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return torch.where(mask, picked, torch.zeros((), dtype=D))
    cases.append(case("logSoftmaxGather", {"logits": logits, "targets": targets}, gather))
    cases.append(case("logSoftmax", {"x": randn(3, 7, std=3.0)}, lambda x: torch.log_softmax(x, -1)))

    # ---- unary ----
    cases.append(case("exp", {"x": randn(2, 5)}, lambda x: torch.exp(x)))
    cases.append(case("log", {"x": randn(2, 5).abs() + 0.1}, lambda x: torch.log(x)))
    ls_x = torch.cat([randn(6, std=3.0), torch.tensor([-1000.0, -100.0, -20.0, 0.0, 20.0, 100.0, 1000.0], dtype=D)])
    cases.append(case("logsigmoid", {"x": ls_x}, lambda x: F.logsigmoid(x)))
    cl_x = torch.tensor([0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, -3.0], dtype=D)
    cases.append(case("clamp both", {"x": cl_x}, lambda x: torch.clamp(x, 0.75, 1.25), {"min": 0.75, "max": 1.25}))
    cases.append(case("clamp min", {"x": cl_x}, lambda x: torch.clamp(x, min=0.75), {"min": 0.75}))
    cases.append(case("clamp max", {"x": cl_x}, lambda x: torch.clamp(x, max=1.25), {"max": 1.25}))

    # ---- minimum / maximum with broadcasting and exact ties ----
    a = randn(2, 3)
    b = randn(3)
    a[0, 1] = b[1]  # tie
    a[1, 2] = b[2]  # tie
    cases.append(case("minimum", {"a": a, "b": b}, lambda a, b: torch.minimum(a, b)))
    cases.append(case("maximum", {"a": a, "b": b}, lambda a, b: torch.maximum(a, b)))

    # ---- where: a (2, 3) mask, a (2, 3) and a (3,) ----
    cond = torch.tensor([[True, False, True], [False, False, True]])
    cases.append(case("where", {"cond": cond, "a": randn(2, 3), "b": randn(3)},
                      lambda cond, a, b: torch.where(cond, a, b)))

    # ---- composites: the DPO loss and PPO's clipped surrogate ----
    # DPO: policy and reference logits (2 pairs x 2 sequences, T = 4, V = 6), prompt tokens ignored
    V, T = 6, 4
    pol = randn(4, T, V, std=1.5)
    ref = randn(4, T, V, std=1.5)
    tgt = torch.tensor([[IGNORE, 1, 5, 2], [IGNORE, IGNORE, 0, 3], [IGNORE, 4, 4, 1], [IGNORE, 2, IGNORE, 5]])
    beta = 0.1

    def dpo(pol, ref, tgt):
        def seq_logp(logits):
            return gather(logits, tgt).sum(-1)  # (4,)
        lp, lr = seq_logp(pol), seq_logp(ref.detach())
        margin = (lp[0::2] - lr[0::2]) - (lp[1::2] - lr[1::2])  # chosen rows 0, 2; rejected 1, 3
        return -F.logsigmoid(beta * margin).mean()
    cases.append(case("dpo", {"pol": pol, "ref": ref, "tgt": tgt}, dpo, {"beta": beta}))

    # PPO: per-token new/old log-probs, advantages, a mask; ratio away from the clip edges
    logp = randn(2, 5, std=0.3)
    logp_old = randn(2, 5, std=0.3)
    adv = randn(2, 5)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    eps = 0.2

    def ppo(logp, logp_old, adv, mask):
        ratio = torch.exp(logp - logp_old.detach())
        surr = torch.minimum(ratio * adv.detach(), torch.clamp(ratio, 1 - eps, 1 + eps) * adv.detach())
        return -(torch.where(mask, surr, torch.zeros((), dtype=D)).sum() / mask.sum())
    cases.append(case("ppo", {"logp": logp, "logp_old": logp_old, "adv": adv, "mask": mask}, ppo, {"eps": eps}))

    for c in cases:  # integer/bool inputs as plain ints
        for v in c["inputs"].values():
            v["data"] = [int(x) if isinstance(x, bool) else x for x in v["data"]]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "post-training-ops.json")
    with open(path, "w") as f:
        json.dump({"torch": torch.__version__, "ignoreIndex": IGNORE, "cases": cases}, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
