import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MetricsLog, readMetrics } from '../../src/train/metrics-log.js';
import { LlmError } from '../../src/util/errors.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('metrics');

test('appends one JSON line per record, creating the directory', () => {
  const p = join(dir, 'run', 'metrics.jsonl');
  const log = new MetricsLog(p);
  log.append({ type: 'train', step: 1, loss: 4.2 });
  log.append({ type: 'eval', step: 1, valLoss: NaN });
  assert.equal(readFileSync(p, 'utf8'), '{"type":"train","step":1,"loss":4.2}\n{"type":"eval","step":1,"valLoss":null}\n');
  assert.deepEqual(readMetrics(p), [
    { type: 'train', step: 1, loss: 4.2 },
    { type: 'eval', step: 1, valLoss: null },
  ]);
});

test('a torn final line is skipped, a bad middle line is an error', () => {
  const p = join(dir, 'torn.jsonl');
  writeFileSync(p, '{"step":1}\n\n{"step":2}\n');
  appendFileSync(p, '{"step":3,"lo');
  assert.deepEqual(readMetrics(p), [{ step: 1 }, { step: 2 }]);

  const bad = join(dir, 'bad.jsonl');
  writeFileSync(bad, '{"step":1}\n{oops\n{"step":2}\n');
  assert.throws(() => readMetrics(bad), (e: unknown) => e instanceof LlmError && e.message.startsWith(`${bad}:2:`));
  assert.throws(() => readMetrics(join(dir, 'none.jsonl')), (e: unknown) => e instanceof LlmError && e.message.includes('none.jsonl'));
});
