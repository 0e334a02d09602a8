/**
 * llmts serve as a client sees it: a child process on a free port, tiny random models, plain
 * fetch. Every endpoint; the streaming chunk shape; generation through the server gives exactly
 * the tokens of `llmts run` / `llmts chat` with the same settings, also with requests decoded
 * together; n samples; logprobs and echo against an in-process forward pass; error shapes and
 * statuses (400 context and fields, 401, 404, 413, 429, 503 while loading, 408 timeout); a client
 * that disconnects frees its slot.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { writeFileSync } from 'node:fs';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { tmpDir } from '../helpers/tmp.js';
import { SERVE_TOKENIZER, sseEvents, startServe, tinyServeModel, type Served } from '../helpers/serve.js';
import { continuationNll } from '../../src/eval/perplexity.js';

const dir = tmpDir('serve');
const { path: modelPath, model } = tinyServeModel(dir, 'tiny', { blockSize: 64 });
const tok = SERVE_TOKENIZER;

/** What `llmts run` prints for these flags (its trailing newline removed). */
function runText(args: string[]): string {
  const r = runCli(['run', modelPath, ...args]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.slice(0, -1);
}

/** The text of a streamed completion: the chunks' text (completions) or delta content (chat), per choice. */
function streamedTexts(events: unknown[]): string[] {
  const out: string[] = [];
  for (const e of events) {
    if (e === '[DONE]') continue;
    for (const c of (e as { choices: { index: number; text?: string; delta?: { content?: string } }[] }).choices) {
      out[c.index] = (out[c.index] ?? '') + (c.text ?? c.delta?.content ?? '');
    }
  }
  return out;
}

function assertError(r: { status: number; json: any }, status: number, type: string, param?: string | null, message?: RegExp): void {
  assert.equal(r.status, status, JSON.stringify(r.json));
  assert.equal(typeof r.json?.error?.message, 'string', 'error.message');
  assert.equal(r.json.error.type, type);
  assert.ok('param' in r.json.error && 'code' in r.json.error, 'error has param and code');
  if (param !== undefined) assert.equal(r.json.error.param, param);
  if (message) assert.match(r.json.error.message, message);
}

describe('llmts serve', () => {
  let server: Served;
  let fresh: Served;
  before(async () => {
    [server, fresh] = await Promise.all([startServe([modelPath, '--slots', '4']), startServe([modelPath, '--slots', '3', '--no-prompt-cache', '-t', '1'])]);
    await Promise.all([server.ready(), fresh.ready()]);
  });

  it('GET /health, /v1/models, /v1/models/:model; POST /tokenize, /detokenize; unknown routes and models are 404', async () => {
    assert.deepEqual((await server.get('/health')).json, { status: 'ok' });
    const models = await server.get('/v1/models');
    assert.equal(models.status, 200);
    assert.equal(models.json.object, 'list');
    assert.equal(models.json.data.length, 1);
    const m = models.json.data[0];
    assert.equal(m.id, 'tiny');
    assert.equal(m.object, 'model');
    assert.equal(m.meta.n_ctx, 64);
    assert.equal(m.meta.n_vocab, tok.vocabSize);
    assert.equal((await server.get('/v1/models/tiny')).json.id, 'tiny');
    assertError(await server.get('/v1/models/nope'), 404, 'not_found_error', 'model');

    const t = await server.post('/tokenize', { prompt: 'hello!', with_pieces: true });
    assert.deepEqual(t.json.tokens, tok.encode('hello!'));
    assert.deepEqual(t.json.pieces, ['h', 'e', 'l', 'l', 'o', '!']);
    assert.equal(t.json.count, 6);
    assert.equal(t.json.max_model_len, 64);
    assert.deepEqual((await server.post('/tokenize', { content: 'ab' })).json.tokens, tok.encode('ab'), "llama.cpp's field name");
    const chatIds = (await server.post('/tokenize', { messages: [{ role: 'user', content: 'hi' }] })).json.tokens as number[];
    assert.equal(tok.decode(chatIds), 'Q: hi\nA:', 'the qa template (the model has no chat tokens)');
    const d = await server.post('/detokenize', { tokens: tok.encode('round trip') });
    assert.equal(d.json.prompt, 'round trip');
    assert.equal(d.json.content, 'round trip');
    assertError(await server.post('/detokenize', { tokens: [1, 500] }), 400, 'invalid_request_error', 'tokens', /outside the vocabulary \[0, 96\)/);
    assertError(await server.post('/tokenize', { prompt: 'x', model: 'other' }), 404, 'not_found_error', 'model');
    assertError(await server.get('/v2/nothing'), 404, 'not_found_error');
    assertError(await server.post('/v1/completions', { model: 'nope', prompt: 'x' }), 404, 'not_found_error', 'model', /"nope" does not exist/);
  });

  it('generation gives exactly the tokens of llmts run (greedy, seeded, default sampling with a penalty, a stop string), also decoded together', async () => {
    const cases: { args: string[]; body: Record<string, unknown> }[] = [
      { args: ['-p', 'hello there', '-n', '30', '--temperature', '0'], body: { prompt: 'hello there', max_tokens: 30, temperature: 0 } },
      { args: ['-p', 'The king', '-n', '25', '--temperature', '1', '--top-k', '0', '--top-p', '1', '--min-p', '0', '-s', '7'], body: { prompt: 'The king', max_tokens: 25, temperature: 1, top_k: 0, top_p: 1, min_p: 0, seed: 7 } },
      { args: ['-p', 'Once', '-n', '30', '-s', '3', '--repeat-penalty', '1.3'], body: { prompt: 'Once', max_tokens: 30, seed: 3, repeat_penalty: 1.3 } },
      { args: ['-p', 'x', '-n', '40', '--temperature', '0.7', '-s', '11', '--top-k', '5'], body: { prompt: 'x', max_tokens: 40, temperature: 0.7, seed: 11, top_k: 5 } },
    ];
    const want = cases.map((c) => runText(c.args));
    // a stop string taken from the middle of a greedy answer
    const stop = want[0].slice(9, 12);
    cases.push({ args: [...cases[0].args, '--stop', stop], body: { ...cases[0].body, stop: [stop, 'never seen'] } });
    want.push(want[0].slice(0, want[0].indexOf(stop)));
    for (const s of [fresh, server]) {
      // all at once, streamed and not: more sequences than slots, joining and leaving the batch
      const plain = cases.map((c) => s.post('/v1/completions', c.body));
      const streamed = cases.map((c) => s.post('/v1/completions', { ...c.body, stream: true }));
      const [a, b] = await Promise.all([Promise.all(plain), Promise.all(streamed)]);
      a.forEach((r, i) => {
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.choices[0].text, want[i], `case ${i}: ${JSON.stringify(cases[i].body)}`);
        assert.equal(r.json.choices[0].finish_reason, i === 4 ? 'stop' : 'length');
      });
      b.forEach((r, i) => assert.equal(streamedTexts(sseEvents(r.text))[0], want[i], `streamed case ${i}`));
    }
  });

  it('chat gives exactly the answer of llmts chat (its template and stop strings); the prompt cache reports cached tokens', async () => {
    const r = runCli(['chat', modelPath, '--temperature', '0', '-n', '40'], 'hi there\n');
    assert.equal(r.code, 0, r.stderr);
    const want = r.stdout.split('\n')[0];
    const got = await fresh.post('/v1/chat/completions', { messages: [{ role: 'user', content: 'hi there' }], max_tokens: 40, temperature: 0 });
    assert.equal(got.status, 200, got.text);
    assert.equal(got.json.object, 'chat.completion');
    assert.deepEqual(got.json.choices[0].message, { role: 'assistant', content: want });
    assert.equal(got.json.usage.prompt_tokens, tok.encode('Q: hi there\nA:').length);
    assert.equal(got.json.usage.total_tokens, got.json.usage.prompt_tokens + got.json.usage.completion_tokens);
    // the default server keeps a slot's tokens: a prompt continuing them is not recomputed (same greedy answer)
    const first = await server.post('/v1/completions', { prompt: 'zebra crossing', max_tokens: 8, temperature: 0 });
    const again = await server.post('/v1/completions', { prompt: 'zebra crossing ahead', max_tokens: 8, temperature: 0 });
    assert.equal(first.status, 200);
    assert.ok(again.json.usage.prompt_tokens_details.cached_tokens >= 'zebra crossing'.length, JSON.stringify(again.json.usage));
    assert.equal(again.json.choices[0].text, runText(['-p', 'zebra crossing ahead', '-n', '8', '--temperature', '0']));
  });

  it('streaming: OpenAI chunk shapes, role first, finish_reason last, usage with include_usage, then data: [DONE]', async () => {
    const r = await server.post('/v1/chat/completions', { messages: [{ role: 'user', content: 'go' }], max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true }, n: 2 });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type')!, /^text\/event-stream/);
    const events = sseEvents(r.text);
    assert.equal(events[events.length - 1], '[DONE]');
    const chunks = events.slice(0, -1) as any[];
    const id = chunks[0].id;
    assert.match(id, /^chatcmpl-[A-Za-z0-9]{24}$/);
    for (const c of chunks) {
      assert.equal(c.id, id);
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.model, 'tiny');
      assert.equal(typeof c.created, 'number');
    }
    const usage = chunks[chunks.length - 1];
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage.completion_tokens, 24);
    for (const index of [0, 1]) {
      const mine = chunks.filter((c) => c.choices.length === 1 && c.choices[0].index === index).map((c) => c.choices[0]);
      assert.deepEqual(mine[0].delta, { role: 'assistant', content: '' });
      assert.equal(mine[mine.length - 1].finish_reason, 'length');
      assert.deepEqual(mine[mine.length - 1].delta, {});
      assert.ok(mine.slice(0, -1).every((c) => c.finish_reason === null));
      assert.ok(mine.slice(1, -1).every((c) => typeof c.delta.content === 'string' && !('role' in c.delta)));
      assert.equal(mine.slice(1, -1).map((c) => c.delta.content).join('').length, 12);
    }
    const text = await server.post('/v1/completions', { prompt: 'abc', max_tokens: 5, temperature: 0, stream: true });
    const tevents = sseEvents(text.text);
    assert.equal(tevents[tevents.length - 1], '[DONE]');
    for (const c of tevents.slice(0, -1) as any[]) {
      assert.equal(c.object, 'text_completion');
      assert.match(c.id, /^cmpl-/);
      assert.equal(typeof c.choices[0].text, 'string');
    }
    assert.equal((tevents[tevents.length - 2] as any).choices[0].finish_reason, 'length');
  });

  it('n samples: choice j is the one-sample answer with seed + j; several prompts give one choice each per sample', async () => {
    const body = { prompt: 'Hello', max_tokens: 15, temperature: 1, top_k: 0, top_p: 1, min_p: 0, seed: 20 };
    const many = await server.post('/v1/completions', { ...body, n: 3 });
    assert.deepEqual(many.json.choices.map((c: any) => c.index), [0, 1, 2]);
    for (let j = 0; j < 3; j++) {
      const one = await fresh.post('/v1/completions', { ...body, seed: 20 + j });
      assert.equal(many.json.choices[j].text, one.json.choices[0].text, `sample ${j}`);
    }
    const prompts = await server.post('/v1/completions', { prompt: ['ab', 'cd'], max_tokens: 4, temperature: 0, n: 2 });
    assert.equal(prompts.json.choices.length, 4);
    assert.equal(prompts.json.choices[0].text, prompts.json.choices[1].text, 'greedy samples agree');
    assert.equal(prompts.json.choices[2].text, runText(['-p', 'cd', '-n', '4', '--temperature', '0']));
    assert.equal(prompts.json.usage.prompt_tokens, 4);
  });

  it('echo and logprobs (lm-evaluation-harness): every prompt token scored as an in-process forward pass scores it; token-id prompts; max_tokens 0', async () => {
    const prompts = [tok.encode('the cat sat'), tok.encode('a dog')];
    const r = await server.post('/v1/completions', { prompt: prompts, max_tokens: 1, temperature: 0, logprobs: 1, echo: true, seed: 1234 });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices.length, 2);
    r.json.choices.forEach((c: any, i: number) => {
      const ids = prompts[i];
      assert.equal(c.index, i);
      const lp = c.logprobs;
      assert.equal(lp.tokens.length, ids.length + 1);
      assert.equal(lp.token_logprobs[0], null);
      assert.equal(lp.top_logprobs[0], null);
      assert.equal(c.text.slice(0, ids.length), tok.decode(ids));
      assert.deepEqual(lp.tokens.slice(0, ids.length), ids.map((id) => tok.decode([id])));
      // what lm-eval sums for a continuation: the prompt tokens after the first, against the in-process score
      const sum = lp.token_logprobs.slice(1, -1).reduce((a: number, b: number) => a + b, 0);
      const nll = continuationNll(model, [{ context: ids.slice(0, 1), continuation: ids.slice(1) }]).nll[0];
      assert.ok(Math.abs(sum + nll) < 1e-3, `prompt ${i}: server ${sum} vs in-process ${-nll}`);
      // greedy: the generated token is the top one, and its log-probability the largest
      const last = lp.token_logprobs[ids.length];
      assert.equal(Math.max(...Object.values(lp.top_logprobs[ids.length]) as number[]), last);
      for (let t = 1; t < ids.length; t++) assert.ok(Object.keys(lp.top_logprobs[t]).length >= 1);
    });
    const zero = await server.post('/v1/completions', { prompt: prompts[0], max_tokens: 0, logprobs: 0, echo: true });
    assert.equal(zero.status, 200, zero.text);
    assert.equal(zero.json.choices[0].text, 'the cat sat');
    assert.equal(zero.json.choices[0].logprobs.tokens.length, prompts[0].length);
    assert.deepEqual(zero.json.choices[0].logprobs.token_logprobs.slice(1), r.json.choices[0].logprobs.token_logprobs.slice(1, -1));
    assert.equal(zero.json.usage.completion_tokens, 0);
    const plain = await server.post('/v1/completions', { prompt: 'x', max_tokens: 0 });
    assert.equal(plain.json.choices[0].text, '');
    assert.equal(plain.json.choices[0].finish_reason, 'length');

    const chat = await server.post('/v1/chat/completions', { messages: [{ role: 'user', content: 'hey' }], max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 3 });
    const content = chat.json.choices[0].logprobs.content as any[];
    assert.equal(content.length, 6);
    assert.equal(content.map((c) => c.token).join(''), chat.json.choices[0].message.content);
    for (const c of content) {
      assert.equal(c.top_logprobs.length, 3);
      assert.deepEqual(c.top_logprobs[0], { token: c.token, logprob: c.logprob, bytes: c.bytes }, 'greedy: the chosen token is the most likely');
      assert.ok(c.top_logprobs[0].logprob >= c.top_logprobs[1].logprob && c.top_logprobs[1].logprob >= c.top_logprobs[2].logprob);
      assert.deepEqual(c.bytes, [...Buffer.from(c.token)]);
    }
  });

  it('errors: 400 for a prompt longer than the context (both counts) and for each bad field, in OpenAI\'s shape', async () => {
    const long = await server.post('/v1/completions', { prompt: 'a'.repeat(70) });
    assertError(long, 400, 'invalid_request_error', 'prompt', /maximum context length is 64 tokens.*70 input tokens/);
    assert.equal(long.json.error.code, 'context_length_exceeded');
    assert.equal(long.json.error.n_prompt_tokens, 70);
    assert.equal(long.json.error.n_ctx, 64);
    assertError(await server.post('/v1/chat/completions', { messages: [{ role: 'user', content: 'b'.repeat(80) }] }), 400, 'invalid_request_error', 'messages', /64 tokens.*\d+ input tokens/);
    const bad: [string, Record<string, unknown>, string][] = [
      ['/v1/completions', { prompt: 'x', temperature: 'hot' }, 'temperature'],
      ['/v1/completions', { prompt: 'x', temperature: -0.1 }, 'temperature'],
      ['/v1/completions', { prompt: 'x', top_p: 1.5 }, 'top_p'],
      ['/v1/completions', { prompt: 'x', top_k: 2.5 }, 'top_k'],
      ['/v1/completions', { prompt: 'x', min_p: -1 }, 'min_p'],
      ['/v1/completions', { prompt: 'x', presence_penalty: 3 }, 'presence_penalty'],
      ['/v1/completions', { prompt: 'x', frequency_penalty: '1' }, 'frequency_penalty'],
      ['/v1/completions', { prompt: 'x', repeat_penalty: 0 }, 'repeat_penalty'],
      ['/v1/completions', { prompt: 'x', seed: 1.5 }, 'seed'],
      ['/v1/completions', { prompt: 'x', seed: 1e300 }, 'seed'],
      ['/v1/completions', { prompt: 'x', max_tokens: -1 }, 'max_tokens'],
      ['/v1/completions', { prompt: 'x', max_tokens: 1e12 }, 'max_tokens'],
      ['/v1/completions', { prompt: 'x', max_tokens: 5000 }, 'max_tokens'],
      ['/v1/completions', { prompt: 'x', n: 0 }, 'n'],
      ['/v1/completions', { prompt: 'x', n: 17 }, 'n'],
      ['/v1/completions', { prompt: 'x', stop: 5 }, 'stop'],
      ['/v1/completions', { prompt: 'x', stop: ['a', 2] }, 'stop'],
      ['/v1/completions', { prompt: 'x', stream: 'yes' }, 'stream'],
      ['/v1/completions', { prompt: 'x', stream_options: [] }, 'stream_options'],
      ['/v1/completions', { prompt: 'x', logprobs: 21 }, 'logprobs'],
      ['/v1/completions', { prompt: 'x', echo: 1 }, 'echo'],
      ['/v1/completions', { prompt: 'x', model: 7 }, 'model'],
      ['/v1/completions', { prompt: 'x', best_of: 3 }, 'best_of'],
      ['/v1/completions', { prompt: 'x', suffix: 'end' }, 'suffix'],
      ['/v1/completions', { prompt: 'x', logit_bias: { 5: 10 } }, 'logit_bias'],
      ['/v1/completions', {}, 'prompt'],
      ['/v1/completions', { prompt: [] }, 'prompt'],
      ['/v1/completions', { prompt: [1, 'a'] }, 'prompt'],
      ['/v1/completions', { prompt: [[1, -2]] }, 'prompt[0]'],
      ['/v1/completions', { prompt: [[]] }, 'prompt[0]'],
      ['/v1/completions', { prompt: [1, 2, 500] }, 'prompt'],
      ['/v1/completions', { prompt: 'é' }, 'prompt'],
      ['/v1/chat/completions', {}, 'messages'],
      ['/v1/chat/completions', { messages: [] }, 'messages'],
      ['/v1/chat/completions', { messages: 'hi' }, 'messages'],
      ['/v1/chat/completions', { messages: [{ role: 'king', content: 'x' }] }, 'messages[0].role'],
      ['/v1/chat/completions', { messages: [{ role: 'user', content: 5 }] }, 'messages[0].content'],
      ['/v1/chat/completions', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] }, 'messages[0].content[0]'],
      ['/v1/chat/completions', { messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].role'],
      ['/v1/chat/completions', { messages: [{ role: 'assistant', content: 'x' }] }, 'messages'],
      ['/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], top_logprobs: 2 }, 'top_logprobs'],
      ['/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], max_tokens: 0 }, 'max_tokens'],
      ['/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], tools: 'all' }, 'tools'],
      ['/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_object' } }, 'response_format'],
      ['/tokenize', {}, 'prompt'],
      ['/detokenize', { tokens: 'abc' }, 'tokens'],
    ];
    for (const [path, body, param] of bad) assertError(await server.post(path, body), 400, 'invalid_request_error', param);
    assertError(await server.postRaw('/v1/completions', '[1, 2]'), 400, 'invalid_request_error', null, /must be a JSON object/);
    assertError(await server.postRaw('/v1/completions', '{"prompt": '), 400, 'invalid_request_error', null, /not valid JSON/);
    assertError(await server.postRaw('/v1/completions', new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])), 400, 'invalid_request_error', null, /not valid UTF-8/);
    // tools are accepted (not yet passed to the template); content as text parts
    const ok = await server.post('/v1/chat/completions', { messages: [{ role: 'developer', content: 'be brief' }, { role: 'user', content: [{ type: 'text', text: 'h' }, { type: 'text', text: 'i' }] }], max_tokens: 2, tools: [{ type: 'function', function: { name: 'f' } }], user: 'u1' });
    assert.equal(ok.status, 200, ok.text);
    // curl -d sends form-urlencoded: still read as JSON
    const form = await server.postRaw('/v1/completions', JSON.stringify({ prompt: 'ab', max_tokens: 2 }), { 'content-type': 'application/x-www-form-urlencoded' });
    assert.equal(form.status, 200, form.text);
  });

  it('metrics: Prometheus text with requests, tokens, queue depth, time to first token, tokens/s', async () => {
    const m = await server.get('/metrics');
    assert.equal(m.status, 200);
    assert.match(m.headers.get('content-type')!, /^text\/plain/);
    for (const name of ['llmts_requests_total', 'llmts_prompt_tokens_total', 'llmts_generated_tokens_total', 'llmts_queue_depth', 'llmts_requests_running', 'llmts_tokens_per_second', 'llmts_time_to_first_token_seconds', 'llmts_request_duration_seconds']) {
      assert.match(m.text, new RegExp(`^# TYPE ${name} (counter|gauge|histogram)$`, 'm'), name);
    }
    assert.match(m.text, /^llmts_requests_total\{endpoint="\/v1\/completions",status="200"\} [1-9]\d*$/m);
    assert.match(m.text, /^llmts_requests_total\{endpoint="\/v1\/completions",status="400"\} [1-9]\d*$/m);
    const generated = Number(/^llmts_generated_tokens_total (\d+)$/m.exec(m.text)![1]);
    assert.ok(generated > 100, `generated ${generated}`);
    assert.match(m.text, /^llmts_time_to_first_token_seconds_count [1-9]\d*$/m);
    assert.match(m.text, /^llmts_queue_depth 0$/m);
    // one log line per request, JSON, with no prompt text
    const lines = server.logs.filter((l) => l.event === 'request' && l.path === '/v1/completions' && l.status === 200);
    assert.ok(lines.length > 10);
    assert.ok(lines.every((l) => typeof l.ms === 'number' && typeof l.prompt_tokens === 'number' && !('prompt' in l) && !('output' in l)));
    assert.ok(!JSON.stringify(server.logs).includes('zebra'), 'no prompt text in the log without --log-prompts');
  });
});

describe('llmts serve: limits', () => {
  // a model slow enough (a few ms a token, 8192 positions) that a long answer outlives the test steps
  const slow = tinyServeModel(dir, 'slow', { blockSize: 8192, nEmbd: 256, nLayer: 4, seed: 5 });
  let server: Served;
  before(async () => {
    server = await startServe([slow.path, '--slots', '1', '--max-queue', '1', '--timeout', '4', '-n', '8000', '--log-prompts']);
    await server.ready();
  });

  /** Stream a long answer; resolves at the first content chunk with a function that drops the connection. */
  function longStream(prompt: string): Promise<{ disconnect: () => void; ended: Promise<string> }> {
    return new Promise((resolve, reject) => {
      const url = new URL('/v1/completions', server.url);
      const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        let body = '';
        let first = true;
        const ended = new Promise<string>((done) => {
          res.on('end', () => done(body));
          res.on('close', () => done(body));
        });
        res.on('data', (d: Buffer) => {
          body += d.toString();
          if (first && body.includes('"text"')) {
            first = false;
            resolve({ disconnect: () => req.destroy(), ended });
          }
        });
      });
      req.on('error', (e) => { if (!(e as NodeJS.ErrnoException).code?.startsWith('ECONNRESET')) reject(e); });
      req.end(JSON.stringify({ prompt, max_tokens: 8000, temperature: 1, stream: true }));
    });
  }

  const requestLine = async (prompt: string): Promise<Record<string, unknown>> => {
    for (let i = 0; i < 200; i++) {
      const line = server.logs.find((l) => l.event === 'request' && Array.isArray(l.prompt) && (l.prompt as unknown[])[0] === prompt);
      if (line) return line;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no log line for ${prompt}`);
  };

  it('a client that disconnects mid-stream stops its generation and frees its slot', async () => {
    const s = await longStream('first one');
    s.disconnect();
    const line = await requestLine('first one');
    assert.equal(line.aborted, true);
    assert.ok((line.completion_tokens as number) < 1000, `stopped early: ${line.completion_tokens} tokens`);
    // the only slot is free again: a new request runs at once (a held slot would queue it behind ~8000 tokens)
    const t0 = performance.now();
    const next = await server.post('/v1/completions', { prompt: 'next', max_tokens: 3 });
    assert.equal(next.status, 200, next.text);
    assert.ok(performance.now() - t0 < 3000, 'answered without waiting for the dropped generation');
    assert.match((await server.get('/metrics')).text, /^llmts_requests_running 0$/m);
  });

  it('a full queue answers 429 with Retry-After; the timeout stops a long request (408; an error event when streaming)', async () => {
    const running = await longStream('holds the slot');
    const queued = server.post('/v1/completions', { prompt: 'waits in the queue', max_tokens: 8000 });
    await new Promise((r) => setTimeout(r, 200));
    const m = await server.get('/metrics');
    assert.match(m.text, /^llmts_queue_depth 1$/m);
    const full = await server.post('/v1/completions', { prompt: 'one too many', max_tokens: 2 });
    assertError(full, 429, 'rate_limit_error', null, /full/);
    assert.equal(full.headers.get('retry-after'), '1');
    assertError(await server.post('/v1/completions', { prompt: 'x', n: 3 }), 400, 'invalid_request_error', 'n', /at most 2 at once/);
    // both run into the 4 s timeout: the streamed one gets an error event and [DONE], the other a 408
    const streamed = await running.ended;
    const events = sseEvents(streamed);
    assert.equal(events[events.length - 1], '[DONE]');
    assert.equal((events[events.length - 2] as any).error.type, 'timeout_error');
    assertError(await queued, 408, 'timeout_error', null, /timeout of 4 s/);
    const after = await server.post('/v1/completions', { prompt: 'after', max_tokens: 2 });
    assert.equal(after.status, 200, after.text);
    // --log-prompts: the prompt and the output are in the log line
    const line = await requestLine('after');
    assert.equal(typeof (line.output as string[])[0], 'string');
  });
});

describe('llmts serve: authentication, loading, body size', () => {
  it('--api-key: 401 without the right Bearer key on every endpoint but /health', async () => {
    const s = await startServe([modelPath, '--api-key', 'sesame']);
    await s.ready();
    assert.equal((await s.get('/health')).status, 200);
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: 'sesame' }, { authorization: 'Bearer sesamE' }] as Record<string, string>[]) {
      assertError(await s.get('/v1/models', headers), 401, 'authentication_error');
      assertError(await s.post('/v1/completions', { prompt: 'x' }, headers), 401, 'authentication_error');
      assertError(await s.get('/metrics', headers), 401, 'authentication_error');
    }
    const ok = await s.post('/v1/completions', { prompt: 'x', max_tokens: 2 }, { authorization: 'Bearer sesame' });
    assert.equal(ok.status, 200, ok.text);
    await s.stop();
    const env = await startServe([modelPath], { LLMTS_API_KEY: 'from-env' });
    await env.ready();
    assertError(await env.get('/v1/models'), 401, 'authentication_error');
    assert.equal((await env.get('/v1/models', { authorization: 'Bearer from-env' })).status, 200);
    await env.stop();
  });

  it('503 while the model loads, then 200; 413 for a body over --max-body; SIGTERM stops it with exit code 0', async () => {
    const s = await startServe([modelPath, '--max-body', '4096'], { LLMTS_SERVE_LOAD_DELAY_MS: '1500' });
    const health = await s.get('/health');
    assertError(health, 503, 'unavailable_error', null, /Loading model/);
    assertError(await s.post('/v1/completions', { prompt: 'x' }), 503, 'unavailable_error');
    await s.ready();
    assert.equal((await s.get('/health')).status, 200);
    assertError(await s.post('/v1/completions', { prompt: 'x'.repeat(5000) }), 413, 'invalid_request_error', null, /--max-body/);
    assert.equal((await s.post('/v1/completions', { prompt: 'x', max_tokens: 1 })).status, 200);
    assert.equal(await s.stop(), 0);
  });

  it('a model that is missing or does not load: one error line, exit code 1', async () => {
    assertOneLineError(runCli(['serve', `${dir}/missing.gguf`]), /^llmts serve: error: model not found: .*missing\.gguf$/);
    assertOneLineError(runCli(['serve', modelPath, '--model', 'tiny=' + modelPath]), /two models are named 'tiny'/);
    writeFileSync(`${dir}/bad.gguf`, 'GGUF but not really a model file at all');
    const s = await startServe([`${dir}/bad.gguf`]);
    assert.equal(await s.exited, 1);
    assert.match(s.stderr(), /^llmts serve: error: loading the models failed: .*\n$/);
    assert.equal(s.stderr().split('\n').length, 2, s.stderr());
  });
});
