/**
 * A real client: the official `openai` Python package drives llmts serve (chat with and without
 * streaming, logprobs; completions with echo and logprobs, lm-evaluation-harness's token-id
 * log-likelihood request; its error classes for 400, 404, 401). Its answers must equal the
 * server's answers to the same requests made with plain HTTP. Skipped, with the reason, when
 * Python or the package is missing (the test suite never needs Python): install it with
 * `/tmp/venv-peft/bin/pip install --index-url file:///opt/pypi/simple openai`, or point
 * LLMTS_PYTHON at a Python that has it.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpDir } from '../helpers/tmp.js';
import { SERVE_TOKENIZER, startServe, tinyServeModel, type Served } from '../helpers/serve.js';

const SCRIPT = fileURLToPath(new URL('../../../test/serve/openai_client.py', import.meta.url));

/** A Python that imports openai, or why there is none. */
function findPython(): { python: string } | { skip: string } {
  const candidates = [process.env.LLMTS_PYTHON, '/tmp/venv-peft/bin/python', 'python3'].filter((p): p is string => !!p);
  for (const python of candidates) {
    if (python.includes('/') && !existsSync(python)) continue;
    const r = spawnSync(python, ['-c', 'import openai'], { encoding: 'utf8' });
    if (r.status === 0) return { python };
  }
  return { skip: `no Python with the openai package (tried ${candidates.join(', ')}; install it with /tmp/venv-peft/bin/pip install --index-url file:///opt/pypi/simple openai)` };
}

const found = findPython();
const skip = 'skip' in found ? found.skip : false;

describe('the openai Python client against llmts serve', { skip }, () => {
  const dir = tmpDir('serve-openai');
  const { path } = tinyServeModel(dir, 'tiny', { blockSize: 64, seed: 9 });
  let server: Served;
  before(async () => {
    server = await startServe([path, '--api-key', 'sesame']);
    await server.ready();
  });
  const auth = { authorization: 'Bearer sesame' };

  it('chat (plain, streamed, logprobs), completions (echo + logprobs, token ids, streamed) and errors give the server\'s answers', async () => {
    const ids = SERVE_TOKENIZER.encode('the quick fox');
    const r = spawnSync((found as { python: string }).python, [SCRIPT, server.url, 'tiny', JSON.stringify(ids)], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const py = JSON.parse(r.stdout);
    assert.deepEqual(py.models, ['tiny']);

    const chat = await server.post('/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'hi there' }], max_tokens: 20, temperature: 0 }, auth);
    const want = chat.json.choices[0];
    assert.equal(py.chat.content, want.message.content);
    assert.equal(py.chat.role, 'assistant');
    assert.equal(py.chat.finish_reason, want.finish_reason);
    assert.equal(py.chat.object, 'chat.completion');
    assert.deepEqual(py.chat.usage, [chat.json.usage.prompt_tokens, chat.json.usage.completion_tokens, chat.json.usage.total_tokens]);
    assert.equal(py.chat_stream.content, want.message.content);
    assert.deepEqual(py.chat_stream.finish_reasons, [want.finish_reason]);
    assert.deepEqual(py.chat_stream.usage, py.chat.usage);
    assert.deepEqual(py.chat_stream.objects, ['chat.completion.chunk']);
    assert.ok(py.chat_stream.chunks > 1, 'streamed in pieces');

    const lp = await server.post('/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'hey' }], max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 2 }, auth);
    assert.deepEqual(py.chat_logprobs, lp.json.choices[0].logprobs.content.map((t: any) => ({ token: t.token, logprob: t.logprob, top: t.top_logprobs.map((a: any) => [a.token, a.logprob]) })));

    const text = await server.post('/v1/completions', { model: 'tiny', prompt: 'hello there', max_tokens: 10, temperature: 0, echo: true, logprobs: 2 }, auth);
    const c = text.json.choices[0];
    assert.equal(py.completion.text, c.text);
    assert.ok(c.text.startsWith('hello there'));
    assert.deepEqual(py.completion.tokens, c.logprobs.tokens);
    assert.deepEqual(py.completion.token_logprobs, c.logprobs.token_logprobs);
    assert.deepEqual(py.completion.top_logprobs, c.logprobs.top_logprobs);
    assert.equal(py.completion.token_logprobs[0], null);
    assert.equal(py.completion.tokens.length, 'hello there'.length + 10);
    assert.equal(py.completion_stream, c.text.slice('hello there'.length));

    const ll = await server.post('/v1/completions', { model: 'tiny', prompt: [ids], max_tokens: 1, temperature: 0, echo: true, logprobs: 1, seed: 1234 }, auth);
    assert.deepEqual(py.loglikelihood.token_logprobs, ll.json.choices[0].logprobs.token_logprobs);
    assert.equal(py.loglikelihood.token_logprobs.length, ids.length + 1);
    assert.deepEqual(py.loglikelihood.top_logprobs, ll.json.choices[0].logprobs.top_logprobs);

    assert.deepEqual(py.errors, { bad_request: [400, 'temperature'], not_found: [404, 'model_not_found'], auth: [401] });
  });
});
