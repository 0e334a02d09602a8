/**
 * llmts info prints strings read from the file escaped: a hostile file cannot forge lines,
 * retitle or clear the terminal (issue 14, defect 9); and a char vocabulary shows as char.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ggufMeta, writeGguf } from '../../src/formats/gguf-write.js';
import { exportGgufModel } from '../../src/formats/gguf-model.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { printable } from '../../src/util/printable.js';
import { runCli } from '../helpers/cli.js';
import { scaledModel, tinyLlama } from '../helpers/tiny-model.js';
import { tmpDir } from '../helpers/tmp.js';

describe('llmts info on hostile strings', () => {
  it('escapes control characters, separators and bidi overrides', () => {
    assert.equal(printable('llama\x1b]0;pwned\x07'), 'llama\\x1b]0;pwned\\x07');
    assert.equal(printable('a\nb\r\tc\x9b'), 'a\\nb\\r\\tc\\x9b');
    assert.equal(printable('x\u202eevil\u2028'), 'x\\u202eevil\\u2028');
    assert.equal(printable('naïve — 東京 😀'), 'naïve — 東京 😀');
  });

  it('a GGUF whose architecture and tokenizer names carry terminal escapes prints one line per field, no ESC', () => {
    const dir = tmpDir('info-escapes');
    const file = join(dir, 'evil.gguf');
    writeGguf(file, {
      metadata: [
        ['general.architecture', ggufMeta.string('llama\x1b]0;pwned\x07\x1b[2J\nparameters  0.00M (forged)')],
        ['tokenizer.ggml.model', ggufMeta.string('gpt2\r\x1b[1A')],
      ],
      tensors: [],
    });
    const r = runCli(['info', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes('\x1b') && !r.stdout.includes('\x07') && !r.stdout.includes('\r'), JSON.stringify(r.stdout));
    assert.match(r.stdout, /^architecture +llama\\x1b\]0;pwned\\x07\\x1b\[2J\\nparameters {2}0\.00M \(forged\)$/m);
    assert.equal(r.stdout.split('\n').filter((l) => l.startsWith('parameters')).length, 1, 'no forged line');
  });

  it('shows a char vocabulary stored in GGUF as char', () => {
    const dir = tmpDir('info-char');
    const tok = CharTokenizer.fromText('the quick brown fox\n');
    const cfg = tinyLlama({ vocabSize: tok.vocabSize, blockSize: 16, nLayer: 1, nHead: 2, nKvHead: 2, nEmbd: 32, hiddenDim: 64 });
    const file = join(dir, 'char.gguf');
    exportGgufModel(file, cfg, scaledModel(cfg).params, { tokenizer: tok });
    const r = runCli(['info', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^tokenizer +char, ${tok.vocabSize} characters \\(stored as a llama vocabulary\\)$`, 'm'));
  });
});
