import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { applyPenalties, argmax, logProb, sampleToken } from '../../src/generate/sampler.js';
import { Rng } from '../../src/util/rng.js';

const logits = Float32Array.from([2.0, 1.0, 0.5, -1.0, 3.0]); // probs ≈ [.23, .09, .05, .01, .62]

function histogram(opts: Parameters<typeof sampleToken>[1], draws = 20000): number[] {
  const rng = new Rng(5);
  const h = new Array(logits.length).fill(0);
  for (let i = 0; i < draws; i++) h[sampleToken(logits, opts, rng)]++;
  return h.map((c) => c / draws);
}

describe('sampler', () => {
  it('temperature 0 is greedy', () => {
    assert.equal(sampleToken(logits, { temperature: 0, topK: 0 }, new Rng(1)), 4);
    assert.equal(argmax(logits), 4);
  });

  it('samples in proportion to softmax(logits / T)', () => {
    const h = histogram({ temperature: 1, topK: 0 });
    const z = [...logits].map(Math.exp);
    const s = z.reduce((a, b) => a + b, 0);
    z.forEach((v, i) => assert.ok(Math.abs(h[i] - v / s) < 0.015, `token ${i}: ${h[i]} vs ${v / s}`));
  });

  it('top-k, top-p and min-p cut the tail', () => {
    assert.deepEqual(histogram({ temperature: 1, topK: 2 }).map((p) => p > 0), [true, false, false, false, true]);
    // p(4) ≈ .62 < .8, p(4)+p(0) ≈ .85 ≥ .8: nucleus is {4, 0}
    assert.deepEqual(histogram({ temperature: 1, topK: 0, topP: 0.8 }).map((p) => p > 0), [true, false, false, false, true]);
    // min-p .1: keep tokens with p ≥ .062
    assert.deepEqual(histogram({ temperature: 1, topK: 0, minP: 0.1 }).map((p) => p > 0), [true, true, false, false, true]);
  });

  it('is reproducible with the same seed', () => {
    const a = Array.from({ length: 50 }, ((rng) => () => sampleToken(logits, { temperature: 1, topK: 0 }, rng))(new Rng(9)));
    const b = Array.from({ length: 50 }, ((rng) => () => sampleToken(logits, { temperature: 1, topK: 0 }, rng))(new Rng(9)));
    assert.deepEqual(a, b);
  });

  it('penalties: repetition (CTRL), presence and frequency (OpenAI)', () => {
    const l = Float32Array.from([2, -2, 1]);
    applyPenalties(l, new Map([[0, 1], [1, 3]]), { repetitionPenalty: 2 });
    assert.deepEqual([...l], [1, -4, 1]);
    const m = Float32Array.from([2, -2, 1]);
    applyPenalties(m, new Map([[0, 1], [1, 3]]), { presencePenalty: 0.5, frequencyPenalty: 0.25 });
    assert.deepEqual([...m], [2 - 0.5 - 0.25, -2 - 0.5 - 0.75, 1]);
  });

  it('log-probabilities (float32 precision, as the logits)', () => {
    const lp = [...logits].map((_, i) => logProb(logits, i));
    assert.ok(Math.abs(lp.reduce((a, b) => a + Math.exp(b), 0) - 1) < 1e-5);
    // against a float64 log-softmax
    const max = Math.max(...logits);
    const lse = max + Math.log([...logits].reduce((a, b) => a + Math.exp(b - max), 0));
    for (let i = 0; i < logits.length; i++) assert.ok(Math.abs(lp[i] - (logits[i] - lse)) < 1e-5, `token ${i}`);
  });
});

/** The textbook sampler: sort the whole vocabulary, normalise over it, top-p, min-p, draw. */
function bruteForce(x: Float32Array, temperature: number, topP: number, minP: number, u: number): number {
  const ids = Array.from({ length: x.length }, (_, i) => i).sort((a, b) => x[b] - x[a] || a - b);
  const max = x[ids[0]];
  const p = ids.map((i) => Math.exp((x[i] - max) / temperature));
  const sum = p.reduce((a, b) => a + b, 0);
  let keep = ids.length;
  let cum = 0;
  for (let i = 0; i < keep && topP < 1; i++) {
    cum += p[i] / sum;
    if (cum >= topP) keep = i + 1;
  }
  let i = 1;
  while (minP > 0 && i < keep && p[i] >= minP * p[0]) i++;
  if (minP > 0) keep = i;
  let r = u * p.slice(0, keep).reduce((a, b) => a + b, 0);
  for (let j = 0; j < keep; j++) if ((r -= p[j]) < 0) return ids[j];
  return ids[keep - 1];
}

describe('sampler without top-k sorts only the candidates that can survive', () => {
  it('draws exactly what the full sort draws', () => {
    let s = 7;
    const x = Float32Array.from({ length: 4000 }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 12 - 6);
    for (const [temperature, topP, minP] of [[1, 0.9, 0], [0.7, 0.95, 0.05], [1.3, 1, 0.02], [1, 0.5, 0]]) {
      const a = new Rng(3);
      const b = new Rng(3);
      for (let i = 0; i < 200; i++) {
        const got = sampleToken(x, { temperature, topK: 0, topP, minP }, a);
        assert.equal(got, bruteForce(x, temperature, topP, minP, b.uniform()), `T=${temperature} p=${topP} min-p=${minP} draw ${i}`);
      }
    }
  });
});
