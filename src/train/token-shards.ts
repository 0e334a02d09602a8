/**
 * llm.c token shards (.bin): a 1024-byte header of 256 little-endian int32,
 *
 *   header[0] = 20240520   magic
 *   header[1] = 1 | 2      version: 1 = tokens are uint16, 2 = tokens are uint32
 *   header[2] = n          number of tokens
 *   header[3..255] = 0
 *
 * followed by the n tokens (little-endian uint16 or uint32).
 *
 *   writeTokenShard('data/train.bin', [464, 2068, 50256]);   // version 1 (all < 65536)
 *   readTokenShard('data/train.bin');                         // Uint16Array [464, 2068, 50256]
 *   writeTokenShard('data/big.bin', [128000, 5]);             // version 2 (uint32)
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { writeFileAtomicParts } from '../util/atomic-write.js';
import { LlmError } from '../util/errors.js';

export const TOKEN_SHARD_MAGIC = 20240520;
export const TOKEN_SHARD_HEADER_BYTES = 1024;

export interface WriteTokenShardOptions {
  /** Force a version (1 = uint16, 2 = uint32) instead of picking the smallest that fits. */
  version?: 1 | 2;
}

/**
 * Tokens as the smallest fitting typed array: Uint16Array when every id is < 65536,
 * otherwise Uint32Array. Typed arrays of the right kind are returned as they are.
 * `what` names the tokens in errors.
 *
 *   toTokenArray([1, 2, 3]);   // Uint16Array [1, 2, 3]
 */
export function toTokenArray(tokens: ArrayLike<number>, what = 'tokens'): Uint16Array | Uint32Array {
  if (tokens instanceof Uint16Array) return tokens;
  let max = 0;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!Number.isInteger(t) || t < 0 || t > 0xffffffff) {
      throw new LlmError(`${what}: token ${i} is ${t}; token ids must be integers in [0, 4294967295]`);
    }
    if (t > max) max = t;
  }
  if (max > 0xffff) return tokens instanceof Uint32Array ? tokens : Uint32Array.from(tokens);
  return Uint16Array.from(tokens);
}

/** Write tokens to `path` as an llm.c shard, atomically. */
export function writeTokenShard(path: string, tokens: ArrayLike<number>, opts: WriteTokenShardOptions = {}): void {
  if (tokens.length > 0x7fffffff) {
    throw new LlmError(`${path}: ${tokens.length} tokens do not fit one llm.c shard (at most 2147483647); split them into several shards`);
  }
  let arr: Uint16Array | Uint32Array = toTokenArray(tokens, path);
  let version: 1 | 2 = arr instanceof Uint16Array ? 1 : 2;
  if (opts.version === 1 && version === 2) {
    throw new LlmError(`${path}: version 1 shards store uint16 tokens but some token ids are >= 65536; use version 2`);
  }
  if (opts.version === 2 && version === 1) {
    arr = Uint32Array.from(arr);
    version = 2;
  }
  const header = new Int32Array(256);
  header[0] = TOKEN_SHARD_MAGIC;
  header[1] = version;
  header[2] = arr.length;
  writeFileAtomicParts(path, [
    new Uint8Array(header.buffer),
    new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength),
  ]);
}

/** Read an llm.c shard: Uint16Array for version 1, Uint32Array for version 2. */
export function readTokenShard(path: string): Uint16Array | Uint32Array {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new LlmError(`cannot open token shard ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const size = fstatSync(fd).size;
    if (size < TOKEN_SHARD_HEADER_BYTES) {
      throw new LlmError(`${path}: not an llm.c token shard (${size} bytes, smaller than the ${TOKEN_SHARD_HEADER_BYTES}-byte header)`);
    }
    const header = new Int32Array(256);
    readFully(fd, new Uint8Array(header.buffer), 0, path);
    if (header[0] !== TOKEN_SHARD_MAGIC) {
      throw new LlmError(`${path}: not an llm.c token shard (magic number is ${header[0]}, expected ${TOKEN_SHARD_MAGIC})`);
    }
    const version = header[1];
    if (version !== 1 && version !== 2) {
      throw new LlmError(`${path}: unsupported llm.c token shard version ${version} (expected 1 for uint16 or 2 for uint32 tokens)`);
    }
    const count = header[2];
    const bytesPerToken = version === 1 ? 2 : 4;
    const expected = TOKEN_SHARD_HEADER_BYTES + count * bytesPerToken;
    if (count < 0 || size !== expected) {
      throw new LlmError(
        `${path}: llm.c token shard header says ${count} tokens, so the file should be ${expected} bytes, but it is ${size} bytes (truncated or corrupt; re-create it)`,
      );
    }
    const tokens = version === 1 ? new Uint16Array(count) : new Uint32Array(count);
    readFully(fd, new Uint8Array(tokens.buffer), TOKEN_SHARD_HEADER_BYTES, path);
    return tokens;
  } finally {
    closeSync(fd);
  }
}

function readFully(fd: number, out: Uint8Array, pos: number, path: string): void {
  let got = 0;
  while (got < out.byteLength) {
    const r = readSync(fd, out, got, out.byteLength - got, pos + got);
    if (r === 0) throw new LlmError(`${path}: file ended early while reading token shard (was it changed while being read?)`);
    got += r;
  }
}

/** Whether the file starts with the token-shard magic (it may still be truncated: readTokenShard checks). */
export function isTokenShard(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(4);
    return readSync(fd, head, 0, 4, 0) === 4 && head.readInt32LE(0) === TOKEN_SHARD_MAGIC;
  } finally {
    closeSync(fd);
  }
}
