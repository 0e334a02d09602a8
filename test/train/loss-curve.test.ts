import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderLossCurveSvg, writeLossCurve } from '../../src/train/loss-curve.js';
import { MetricsLog } from '../../src/train/metrics-log.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('loss-curve');

function pointsOf(svg: string, cls: string): string[] {
  const m = svg.match(new RegExp(`<polyline class="${cls}"[^>]* points="([^"]*)"`));
  return m ? m[1].split(' ') : [];
}

/** Tags balance and every attribute value is quoted: a cheap well-formedness check. */
function assertWellFormed(svg: string): void {
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  assert.ok(svg.trimEnd().endsWith('</svg>'));
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-z]+)([^>]*?)(\/?)>/g)) {
    const [, close, name, , selfClose] = m;
    if (close) assert.equal(stack.pop(), name);
    else if (!selfClose) stack.push(name);
  }
  assert.deepEqual(stack, []);
  assert.ok(!/NaN|Infinity|undefined/.test(svg), 'no NaN/Infinity/undefined in output');
}

test('train line and val line+dots with the right number of points', () => {
  const records = [];
  for (let s = 0; s <= 100; s += 10) records.push({ step: s, trainLoss: 4 - s / 50 });
  records.push({ step: 50, valLoss: 3.1 }, { step: 100, valLoss: 2.4 });
  const svg = renderLossCurveSvg(records, { title: 'a <test> & "title"' });
  assertWellFormed(svg);
  assert.equal(pointsOf(svg, 'train').length, 11);
  assert.equal(pointsOf(svg, 'val').length, 2);
  assert.equal((svg.match(/<g class="val-dots"[^]*?<\/g>/)![0].match(/<circle/g) ?? []).length, 2);
  assert.ok(svg.includes('a &lt;test&gt; &amp; &quot;title&quot;'));
  assert.ok(svg.includes('train loss') && svg.includes('val loss'));
  // Every point lies inside the 800x450 canvas.
  for (const p of [...pointsOf(svg, 'train'), ...pointsOf(svg, 'val')]) {
    const [x, y] = p.split(',').map(Number);
    assert.ok(x >= 0 && x <= 800 && y >= 0 && y <= 450, p);
  }
});

test('a single point, non-finite values and no data', () => {
  const one = renderLossCurveSvg([{ step: 0, trainLoss: 4.17 }]);
  assertWellFormed(one);
  assert.equal(pointsOf(one, 'train').length, 1);
  assert.equal(pointsOf(one, 'val').length, 0);

  const mixed = renderLossCurveSvg([
    { step: 0, trainLoss: NaN },
    { step: 1, trainLoss: 3 },
    { step: 2, trainLoss: Infinity },
    { step: 3, trainLoss: 2.5, valLoss: NaN },
  ]);
  assertWellFormed(mixed);
  assert.equal(pointsOf(mixed, 'train').length, 2);

  const none = renderLossCurveSvg([]);
  assertWellFormed(none);
  assert.ok(none.includes('no data'));
});

test('many train points are averaged down to maxPoints', () => {
  const records = Array.from({ length: 10000 }, (_, i) => ({ step: i, trainLoss: 3 + Math.sin(i) }));
  const svg = renderLossCurveSvg(records, { maxPoints: 500 });
  assertWellFormed(svg);
  assert.equal(pointsOf(svg, 'train').length, 500);
});

test('writeLossCurve plots train loss and eval valLoss from a metrics file', () => {
  const metrics = join(dir, 'metrics.jsonl');
  const log = new MetricsLog(metrics);
  for (let s = 1; s <= 5; s++) log.append({ type: 'train', step: s, loss: 5 - s * 0.5, lr: 1e-3 });
  log.append({ type: 'eval', step: 5, valLoss: 2.7, trainLoss: 2.5 });
  log.append({ type: 'sample', step: 5, text: 'hello' });
  const svgPath = join(dir, 'out', 'loss.svg');
  writeLossCurve(metrics, svgPath, { title: 'run' });
  const svg = readFileSync(svgPath, 'utf8');
  assertWellFormed(svg);
  assert.equal(pointsOf(svg, 'train').length, 5);
  assert.equal(pointsOf(svg, 'val').length, 1);
});
