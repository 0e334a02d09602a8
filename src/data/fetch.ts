/**
 * Finding a dataset: a local file, an http(s) URL (downloaded once into a cache),
 * or a known name.
 *
 *   await resolveDataset('data/input.txt');     // 'data/input.txt' (it exists)
 *   await resolveDataset('tinyshakespeare');
 *   // first call downloads to ~/.cache/llmts/datasets/<sha1 of url>-input.txt, later calls reuse it
 *
 * The cache directory is `opts.cacheDir` if given, else `$LLMTS_CACHE/datasets`,
 * else `~/.cache/llmts/datasets`.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { LlmError } from '../util/errors.js';
import { ProgressLine, formatBytes } from '../util/progress.js';

/** Dataset names accepted in place of a path or URL. */
export const KNOWN_DATASETS: Readonly<Record<string, string>> = {
  tinyshakespeare: 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt',
};

export interface ResolveDatasetOptions {
  /** Directory holding downloaded datasets (default: see the file comment). */
  cacheDir?: string;
}

/** Directory where downloaded datasets are kept. */
export function datasetCacheDir(opts: ResolveDatasetOptions = {}): string {
  if (opts.cacheDir) return opts.cacheDir;
  const root = process.env.LLMTS_CACHE || join(homedir(), '.cache', 'llmts');
  return join(root, 'datasets');
}

/** Cache file for `url`: `<cacheDir>/<sha1 of url>-<last path segment>`. */
export function datasetCachePath(url: string, opts: ResolveDatasetOptions = {}): string {
  const sha1 = createHash('sha1').update(url).digest('hex');
  let base = 'data';
  try {
    const seg = new URL(url).pathname.split('/').pop() ?? '';
    base = seg.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '') || 'data';
  } catch {
    /* keep 'data'; the download itself reports the bad URL */
  }
  return join(datasetCacheDir(opts), `${sha1}-${base}`);
}

/** Local path of the dataset named by `spec` (a path, an http(s) URL or a KNOWN_DATASETS name). */
export async function resolveDataset(spec: string, opts: ResolveDatasetOptions = {}): Promise<string> {
  const local = statOrNull(spec);
  if (local) {
    if (local.isDirectory()) throw new LlmError(`data path is a directory, not a file: ${spec} (pass --data with a text file)`);
    return spec;
  }
  const url = Object.hasOwn(KNOWN_DATASETS, spec) ? KNOWN_DATASETS[spec] : spec;
  if (!/^https?:\/\//i.test(url)) {
    throw new LlmError(`data file not found: ${spec} (pass --data with a local file or a URL)`);
  }
  const cached = datasetCachePath(url, opts);
  if (statOrNull(cached)?.isFile()) return cached;
  await download(url, cached);
  return cached;
}

function statOrNull(path: string) {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

/** Stream `url` into `dest` via a temp file in the same directory, renamed when complete. */
async function download(url: string, dest: string): Promise<void> {
  const hint = '(check the URL and your network, or pass --data with a local file)';
  let res: Response;
  try {
    res = await fetch(url);
  } catch (err) {
    const cause = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
    throw new LlmError(`download failed: ${url}: ${cause} ${hint}`, { cause: err });
  }
  if (!res.ok || res.body === null) {
    throw new LlmError(`download failed: ${url} returned HTTP ${res.status} ${res.statusText} ${hint}`);
  }
  const lengthHeader = Number(res.headers.get('content-length'));
  // With content-encoding, fetch decompresses and content-length counts compressed bytes.
  const total = res.headers.get('content-encoding') ? 0 : lengthHeader;
  const progress = new ProgressLine(total, { label: `download ${url}`, format: formatBytes });

  mkdirSync(dirname(dest), { recursive: true });
  const tmp = `${dest}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let fd: number | null = openSync(tmp, 'w');
  try {
    let got = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      let off = 0;
      while (off < chunk.byteLength) off += writeSync(fd, chunk, off, chunk.byteLength - off);
      got += chunk.byteLength;
      progress.update(got);
    }
    if (total > 0 && got !== total) {
      throw new LlmError(`download failed: ${url} ended after ${got} of ${total} bytes ${hint}`);
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    renameSync(tmp, dest);
    progress.done(`downloaded ${url} (${formatBytes(got)}) to ${dest}`);
  } catch (err) {
    progress.done();
    if (fd !== null) closeSync(fd);
    rmSync(tmp, { force: true });
    if (err instanceof LlmError) throw err;
    throw new LlmError(`download failed: ${url}: ${(err as Error).message} ${hint}`, { cause: err });
  }
}
