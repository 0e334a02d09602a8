/**
 * llmts chat as a person uses it: in a real pseudo-terminal (util-linux `script`, or python3's
 * pty module), typing a message, reading the streamed answer, /reset, then Ctrl-D. Also piped
 * stdin (one message per line). The model has random weights, so answers are gibberish: the
 * test checks the structure (prompt, answer, prompt again, exit code).
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { saveCheckpoint } from '../../src/train/checkpoint.js';
import { tmpDir } from '../helpers/tmp.js';
import { scaledModel, tinyLlama } from '../helpers/tiny-model.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

const tok = CharTokenizer.fromText('abcdefghijklmnopqrstuvwxyz ,.!?\nQA:');
const cfg = tinyLlama({ vocabSize: tok.vocabSize, blockSize: 64, nLayer: 1, nHead: 2, nKvHead: 1, nEmbd: 16, hiddenDim: 32 });
const dir = tmpDir('chat-pty');
const ckpt = join(dir, 'ckpt.safetensors');

const has = (cmd: string, args: string[]): boolean => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0;
};
const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** Spawn a command line inside a pseudo-terminal; null when no way to make one is installed. */
function spawnInPty(argv: string[]): ChildProcess | null {
  const line = argv.map(shq).join(' ');
  if (has('script', ['--version'])) {
    return spawn('script', ['-qfec', line, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, TERM: 'xterm' } });
  }
  if (has('python3', ['-c', 'import pty'])) {
    const py = 'import os, pty, sys\nst = pty.spawn(sys.argv[1:])\nsys.exit(os.waitstatus_to_exitcode(st))';
    return spawn('python3', ['-c', py, ...argv], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, TERM: 'xterm' } });
  }
  return null;
}

/** The promise's value, or 'timeout' after ms (the timer does not keep the process alive). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), ms); });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

class Terminal {
  /** everything the terminal showed, raw */
  raw = '';
  private waiters: (() => void)[] = [];
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    const onData = (d: Buffer): void => {
      this.raw += d.toString('utf8');
      for (const w of this.waiters.splice(0)) w();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  }

  /** The output without terminal control sequences (cursor moves, line clears). */
  get out(): string {
    // eslint-disable-next-line no-control-regex
    return this.raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
  }

  /** Wait until the output from `from` on matches; returns the index after the match. */
  async waitFor(re: RegExp, from: number, ms = 20000): Promise<number> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = re.exec(this.out.slice(from));
      if (m) return from + m.index + m[0].length;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${re} in:\n${JSON.stringify(this.out.slice(from))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  type(s: string): void {
    this.child.stdin!.write(s);
  }
}

describe('llmts chat', () => {
  before(() => {
    const model = scaledModel(cfg, { seed: 3, gain: 4 });
    saveCheckpoint(ckpt, { config: cfg, params: model.params, tokenizer: tok.toJSON(), trainer: {} });
  });

  it('in a terminal: prompt, streamed answer, prompt again, /reset, Ctrl-D exits 0', async (t) => {
    const child = spawnInPty([process.execPath, CLI, 'chat', ckpt, '--template', 'qa', '--max-tokens', '12', '--temperature', '0', '--system', 'be nice']);
    if (!child) {
      t.skip('neither util-linux script nor python3 (pty) is available');
      return;
    }
    const term = new Terminal(child);
    try {
      let at = await term.waitFor(/template qa, context 64 tokens[^\n]*\n/, 0);
      at = await term.waitFor(/> /, at);
      term.type('hello');
      at = await term.waitFor(/hello/, at); // echoed as typed
      term.type('\r');
      const answerStart = at;
      at = await term.waitFor(/\r?\n> /, at);
      const answer = term.out.slice(answerStart, at).replace(/\r?\n> $/, '').trim();
      assert.ok(answer.length > 0, `expected some answer text, got ${JSON.stringify(term.out.slice(answerStart))}`);
      assert.match(answer, /^[a-zQA:,.!? \r\n]+$/);

      term.type('/help\r');
      at = await term.waitFor(/\/reset\s+forget the conversation[\s\S]*\n> /, at);
      term.type('/reset\r');
      at = await term.waitFor(/\(conversation reset\)\r?\n> /, at);

      term.type('\x04');
      const code = await within(term.exited, 10000);
      assert.equal(code, 0, `exit after Ctrl-D: ${String(code)}; output:\n${term.out}`);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('Ctrl-C at the prompt leaves cleanly', async (t) => {
    const child = spawnInPty([process.execPath, CLI, 'chat', ckpt, '--template', 'qa', '--max-tokens', '4']);
    if (!child) {
      t.skip('neither util-linux script nor python3 (pty) is available');
      return;
    }
    const term = new Terminal(child);
    try {
      await term.waitFor(/> /, 0);
      term.type('\x03');
      const code = await within(term.exited, 10000);
      assert.equal(code, 0, `exit after Ctrl-C: ${String(code)}; output:\n${term.out}`);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('piped stdin: one message per line, no prompts, exit 0 at EOF', () => {
    const r = spawnSync(process.execPath, [CLI, 'chat', ckpt, '--template', 'qa', '--max-tokens', '6', '--temperature', '0'], {
      input: 'hello\n/reset\nhow are you\n', encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /> /);
    assert.ok(r.stdout.length > 2 && r.stdout.endsWith('\n'), JSON.stringify(r.stdout)); // two answers, each ending in a newline
    assert.match(r.stderr, /\(conversation reset\)/);
  });

  it('--verbose: per turn prompt, reused and prefilled tokens; --no-prompt-cache gives the same answers reusing nothing', () => {
    const chat = (...flags: string[]) => spawnSync(process.execPath, [CLI, 'chat', ckpt, '--template', 'qa', '--max-tokens', '6', '--temperature', '0.8', '--verbose', ...flags], {
      input: 'hello\nhow are you\nand then\n', encoding: 'utf8',
    });
    const stats = (stderr: string) => [...stderr.matchAll(/^llmts chat: turn (\d+): (\d+) prompt tokens \((\d+) reused, (\d+) prefilled in [\d.]+ ms\), (\d+) generated at [\d.]+ tok\/s, stopped: \w+$/gm)]
      .map((m) => ({ turn: Number(m[1]), prompt: Number(m[2]), reused: Number(m[3]), prefilled: Number(m[4]) }));
    const cached = chat();
    const plain = chat('--no-prompt-cache');
    assert.equal(cached.status, 0, cached.stderr);
    assert.equal(plain.status, 0, plain.stderr);
    assert.equal(cached.stdout, plain.stdout);
    const a = stats(cached.stderr);
    const b = stats(plain.stderr);
    assert.deepEqual(a.map((s) => s.turn), [1, 2, 3], cached.stderr);
    for (const s of [...a, ...b]) assert.equal(s.reused + s.prefilled, s.prompt);
    assert.equal(a[0].reused, 0);
    // 'Q: hello\nA: ...' is re-rendered unchanged at the start of the next prompt (one char per token)
    assert.ok(a[1].reused >= a[0].prompt && a[2].reused >= a[1].prompt, cached.stderr);
    assert.deepEqual(b.map((s) => s.reused), [0, 0, 0]);
    assert.deepEqual(b.map((s) => s.prompt), a.map((s) => s.prompt));
  });

  it('a template the tokenizer cannot spell is a one-line error', () => {
    const r = spawnSync(process.execPath, [CLI, 'chat', ckpt, '--template', 'chatml'], { input: '', encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr.trim(), /^llmts chat: error: the tokenizer can neither encode nor has a token for the chatml template's '<\|im_start\|>'/);
    const bad = spawnSync(process.execPath, [CLI, 'chat', ckpt, '--template', 'vicuna'], { input: '', encoding: 'utf8' });
    assert.match(bad.stderr, /--template vicuna: must be one of chatml, llama2, alpaca, qa/);
  });
});
