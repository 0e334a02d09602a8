/**
 * Hostile request bodies against llmts serve: every field of the generation endpoints given
 * values of the wrong type or absurd size, deep nesting, invalid UTF-8, truncated JSON, random
 * bytes, a 10 MB body. Each answer is a 4xx in OpenAI's error shape (or a 200 where the value
 * happens to be valid), never a 5xx, never a hang; the server answers normally afterwards.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/util/rng.js';
import { tmpDir } from '../helpers/tmp.js';
import { startServe, tinyServeModel, type Served } from '../helpers/serve.js';

const dir = tmpDir('serve-fuzz');
const { path: modelPath } = tinyServeModel(dir, 'fuzz', { blockSize: 48 });

const COMPLETION_FIELDS = ['model', 'prompt', 'max_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'presence_penalty', 'frequency_penalty', 'repeat_penalty', 'repetition_penalty', 'seed', 'stop', 'n', 'stream', 'stream_options', 'logprobs', 'echo', 'best_of', 'suffix', 'logit_bias', 'user', 'add_special'];
const CHAT_FIELDS = ['model', 'messages', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'top_k', 'seed', 'stop', 'n', 'stream', 'stream_options', 'logprobs', 'top_logprobs', 'tools', 'tool_choice', 'response_format', 'logit_bias'];

/** Raw JSON texts of hostile values (some are not expressible as JS values: 1e400, lone surrogates). */
const VALUES = [
  '-1', '0', '1', '2.5', '1e308', '-1e308', '1e400', '9007199254740993', '-0', '"x"', '""', `"${'y'.repeat(20000)}"`, 'true', 'false', '[]', '{}',
  '[[[[]]]]', '{"__proto__": {"polluted": 1}}', '"\\u0000"', '"\\ud800"', '[1, "a", null]', `[${'7,'.repeat(3000)}7]`, '{"type": "text"}',
  `${'['.repeat(5000)}${']'.repeat(5000)}`, '[{"role": "user", "content": {"a": 1}}]', '[{"role": "system"}]', '"<|im_end|>"', '[-5]', '[[1, 2], "x"]',
];

const BASE: Record<string, Record<string, unknown>> = {
  '/v1/completions': { prompt: 'hello', max_tokens: 3 },
  '/v1/chat/completions': { messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 },
};

/** The base body of the endpoint with `field` set to the raw JSON `value`. */
function withField(path: string, field: string, value: string): string {
  const base = { ...BASE[path] };
  delete base[field];
  const json = JSON.stringify(base);
  return `${json.slice(0, -1)}${Object.keys(base).length > 0 ? ', ' : ''}"${field}": ${value}}`;
}

interface Case {
  path: string;
  body: string | Uint8Array;
  /** known to be invalid: must be a 4xx */
  invalid: boolean;
  what: string;
}

function cases(): Case[] {
  const rng = new Rng(2024);
  const out: Case[] = [];
  const enc = new TextEncoder();
  for (const [path, fields] of [['/v1/completions', COMPLETION_FIELDS], ['/v1/chat/completions', CHAT_FIELDS]] as const) {
    for (const f of fields) {
      for (const v of VALUES) {
        out.push({ path, body: withField(path, f, v), invalid: false, what: `${f}=${v.slice(0, 30)}` });
      }
    }
    // two hostile fields at once
    for (let i = 0; i < 400; i++) {
      const a = fields[rng.int(fields.length)];
      const b = fields[rng.int(fields.length)];
      if (a === b) continue;
      out.push({ path, body: `{"${a}": ${VALUES[rng.int(VALUES.length)]}, "${b}": ${VALUES[rng.int(VALUES.length)]}}`, invalid: false, what: `${a}, ${b}` });
    }
    const valid = JSON.stringify(BASE[path]);
    // truncated JSON: never valid
    for (let i = 0; i < 40; i++) {
      const cut = 1 + rng.int(valid.length - 1);
      out.push({ path, body: valid.slice(0, cut), invalid: true, what: `cut at ${cut}` });
    }
    // invalid UTF-8 inside a string
    for (const bad of [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82]]) {
      const bytes = enc.encode(valid);
      const at = valid.indexOf('h');
      out.push({ path, body: new Uint8Array([...bytes.slice(0, at), ...bad, ...bytes.slice(at)]), invalid: true, what: `bytes ${bad}` });
    }
    // random bytes
    for (let i = 0; i < 20; i++) out.push({ path, body: Uint8Array.from({ length: 1 + rng.int(300) }, () => rng.int(256)), invalid: true, what: 'random bytes' });
    // deep nesting: as the body, and as a field
    out.push({ path, body: '['.repeat(200_000) + ']'.repeat(200_000), invalid: true, what: 'nested body' });
    out.push({ path, body: `{"prompt": ${'['.repeat(100_000)}1${']'.repeat(100_000)}, "messages": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`, invalid: true, what: 'nested field' });
    // not an object
    for (const v of ['null', '1', '"x"', '[]', 'true']) out.push({ path, body: v, invalid: true, what: `body ${v}` });
    // too big: 10 MB (the limit is 1 MiB)
    out.push({ path, body: `{"prompt": "${'a'.repeat(10 * 1024 * 1024)}"}`, invalid: true, what: '10 MB' });
    // token ids far past the context and the vocabulary
    out.push({ path, body: `{"prompt": [${'1,'.repeat(100_000)}1]}`, invalid: true, what: '100k token ids' });
    out.push({ path, body: '{"prompt": [4294967296]}', invalid: true, what: 'token id 2^32' });
  }
  for (const v of VALUES) {
    out.push({ path: '/tokenize', body: `{"prompt": ${v}}`, invalid: false, what: `tokenize ${v.slice(0, 20)}` });
    out.push({ path: '/detokenize', body: `{"tokens": ${v}}`, invalid: false, what: `detokenize ${v.slice(0, 20)}` });
  }
  return out;
}

describe('llmts serve: hostile request bodies', () => {
  let server: Served;
  before(async () => {
    server = await startServe([modelPath, '--slots', '4', '--max-queue', '256']);
    await server.ready();
  });

  it('thousands of hostile bodies: 4xx (or 200 where valid) in OpenAI\'s error shape, never a 5xx or a hang', async (t) => {
    const all = cases();
    assert.ok(all.length >= 2000, `${all.length} cases`);
    const statuses = new Map<number, number>();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < all.length) {
        const c = all[next++];
        const r = await fetch(server.url + c.path, {
          method: 'POST', body: c.body as BodyInit, headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(60_000),
        });
        const text = await r.text();
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        assert.ok(r.status < 500, `${c.path} ${c.what}: ${r.status} ${text.slice(0, 200)}`);
        if (c.invalid) assert.ok(r.status >= 400, `${c.path} ${c.what}: ${r.status} for an invalid body`);
        if (r.status >= 400) {
          const e = JSON.parse(text) as { error: { message: string; type: unknown; param: unknown; code: unknown } };
          assert.equal(typeof e.error.message, 'string', `${c.what}: ${text.slice(0, 200)}`);
          assert.ok(e.error.message.length < 2000);
          assert.equal(typeof e.error.type, 'string');
          assert.ok('param' in e.error && 'code' in e.error);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    t.diagnostic(`${all.length} bodies; statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
    const fourxx = [...statuses].filter(([s]) => s >= 400).reduce((n, [, k]) => n + k, 0);
    assert.ok(fourxx > all.length * 0.6, `mostly refused: ${JSON.stringify([...statuses])}`);
    assert.ok(statuses.get(413)! >= 2, '10 MB bodies: 413');
    // still healthy, and nothing leaked into Object.prototype
    assert.equal((await server.get('/health')).status, 200);
    const ok = await server.post('/v1/completions', { prompt: 'still here', max_tokens: 3, temperature: 0 });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(({} as { polluted?: number }).polluted, undefined);
    assert.equal(server.proc.exitCode, null);
    assert.doesNotMatch(server.stderr(), /error/i);
  });
});
