import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ProgressLine,
  formatBar,
  formatBytes,
  formatDuration,
  formatFields,
  formatProgressLine,
} from '../../src/util/progress.js';

test('formatDuration', () => {
  assert.equal(formatDuration(0), '0s');
  assert.equal(formatDuration(45), '45s');
  assert.equal(formatDuration(59.4), '59s');
  assert.equal(formatDuration(59.6), '1m00s');
  assert.equal(formatDuration(65), '1m05s');
  assert.equal(formatDuration(3599), '59m59s');
  assert.equal(formatDuration(3600), '1h00m');
  assert.equal(formatDuration(7380), '2h03m');
  assert.equal(formatDuration(-1), '?');
  assert.equal(formatDuration(NaN), '?');
  assert.equal(formatDuration(Infinity), '?');
});

test('formatBytes, formatFields, formatBar', () => {
  assert.equal(formatBytes(512), '512B');
  assert.equal(formatBytes(1536), '1.50KB');
  assert.equal(formatBytes(1115394), '1.06MB');
  assert.equal(formatBytes(50 * 1024 ** 3), '50.0GB');
  assert.equal(formatFields({ loss: 2.314159, lr: 0.0003, step: 12, note: 'ok' }), 'loss=2.314 lr=0.0003 step=12 note=ok');
  assert.equal(formatBar(0.5, 10), '[#####.....]');
  assert.equal(formatBar(2, 4), '[####]');
  assert.equal(formatBar(NaN, 4), '[....]');
});

test('formatProgressLine', () => {
  assert.equal(
    formatProgressLine({ label: 'train', done: 250, total: 1000, fields: { loss: 2.5 }, elapsedSec: 20, bar: true }),
    'train [#####...............]  25% 250/1000 loss=2.5 ETA 1m00s',
  );
  assert.equal(formatProgressLine({ done: 1000, total: 1000, elapsedSec: 65 }), '100% 1000/1000 1m05s');
  assert.equal(formatProgressLine({ label: 'dl', done: 2048, total: 0, elapsedSec: 3, format: formatBytes }), 'dl 2.00KB 3s');
});

function fakeStream(isTTY: boolean) {
  const writes: string[] = [];
  return { writes, stream: { isTTY, columns: 60, write: (s: string) => writes.push(s) } };
}

test('ProgressLine on a TTY rewrites one line', () => {
  let now = 0;
  const { writes, stream } = fakeStream(true);
  const p = new ProgressLine(10, { stream, label: 'x', now: () => now });
  for (let i = 1; i <= 10; i++) {
    now += 1000;
    p.update(i, { loss: 1 / i });
  }
  p.done();
  assert.equal(writes.length, 11);
  assert.ok(writes.slice(0, 10).every((w) => w.startsWith('\r') && !w.includes('\n') && w.length < 60 + 4));
  assert.ok(writes[10].endsWith('\n'));
});

test('ProgressLine off a TTY prints plain lines every 10% or interval', () => {
  let now = 0;
  const { writes, stream } = fakeStream(false);
  const p = new ProgressLine(1000, { stream, intervalSec: 10, now: () => now });
  for (let i = 1; i <= 1000; i++) {
    now += 5; // 5 s for the whole run, so only the 10% rule fires
    p.update(i);
  }
  p.done('finished');
  assert.ok(writes.every((w) => !w.includes('\r') && w.endsWith('\n')));
  assert.equal(writes.length, 1 + 10 + 1); // first update, each decile, done
  assert.equal(writes.at(-1), 'finished\n');
});

test('ProgressLine off a TTY prints the final line once (done() after the 100% update adds nothing)', () => {
  let now = 0;
  const { writes, stream } = fakeStream(false);
  const p = new ProgressLine(20, { stream, label: 'train', now: () => now });
  for (let i = 1; i <= 20; i++) {
    now += 1000;
    p.update(i, { loss: (1 / i).toFixed(3) });
  }
  p.done();
  const finals = writes.filter((w) => w.includes(' 20/20 '));
  assert.equal(finals.length, 1, writes.join(''));
  assert.equal(writes.at(-1), finals[0]);
  // stopped early (Ctrl-C): the last state was not printed yet, so done() prints it
  const early = fakeStream(false);
  const q = new ProgressLine(100, { stream: early.stream, label: 'train', now: () => now });
  q.update(1);
  q.update(5);
  q.done();
  assert.match(early.writes.at(-1)!, /^train +5% 5\/100 /);
  assert.equal(early.writes.length, 2);
});
