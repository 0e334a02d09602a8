/**
 * The HTTP thread's handle on the model worker: starts it, forwards jobs and cancels, and routes
 * what comes back to each job's handlers. The HTTP thread never runs the model.
 *
 *   const host = new ModelHost(config, { onCrash: (msg) => { log(msg); process.exit(1); } });
 *   await host.loaded;                                  // rejects with the load error
 *   const id = host.submit(job, { accepted, event, failed, end });
 *   host.cancel(id);                                    // the client went away
 *   await host.request({ type: 'tokenize', model, text, addSpecial: true, withPieces: false });
 */
import { Worker } from 'node:worker_threads';
import { ApiError } from './api-error.js';
import type { ChoiceEvent, FromWorker, GenerateJob, ModelInfo, ToWorker, WorkerConfig } from './protocol.js';

export interface JobHandlers {
  /** the prompts fit: their token counts */
  accepted(promptTokens: number[]): void;
  event(e: ChoiceEvent): void;
  /** refused (before accepted) or failed (after) */
  failed(error: ApiError): void;
  /** always last: the worker holds nothing of the job any more */
  end(): void;
}

type Request = Extract<ToWorker, { type: 'tokenize' | 'detokenize' }>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export class ModelHost {
  state: 'loading' | 'ready' | 'failed' = 'loading';
  models: ModelInfo[] = [];
  backend = '';
  readonly loaded: Promise<void>;
  private readonly worker: Worker;
  private nextId = 1;
  private readonly jobs = new Map<number, JobHandlers>();
  private readonly replies = new Map<number, { resolve: (v: unknown) => void; reject: (e: ApiError) => void }>();
  private closing = false;

  constructor(config: WorkerConfig, private readonly hooks: { onCrash: (message: string) => void }) {
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: config });
    this.loaded = new Promise<void>((resolve, reject) => {
      this.worker.on('message', (m: FromWorker) => {
        if (m.type === 'ready') {
          this.state = 'ready';
          this.models = m.models;
          this.backend = m.backend;
          resolve();
        } else if (m.type === 'load-failed') {
          this.state = 'failed';
          reject(new Error(m.message));
        } else {
          this.route(m);
        }
      });
      const crashed = (message: string): void => {
        if (this.closing) return;
        const wasLoading = this.state === 'loading';
        this.state = 'failed';
        const err = new ApiError(500, `the model worker stopped: ${message}`, 'server_error');
        for (const h of this.jobs.values()) {
          h.failed(err);
          h.end();
        }
        this.jobs.clear();
        for (const r of this.replies.values()) r.reject(err);
        this.replies.clear();
        if (wasLoading) reject(new Error(message));
        else hooks.onCrash(message);
      };
      this.worker.on('error', (err) => crashed(err.message));
      this.worker.on('exit', (code) => crashed(`exit code ${code}`));
    });
    this.loaded.catch(() => { /* the caller awaits it; no unhandled rejection meanwhile */ });
  }

  /** Queue a job; its handlers get everything about it. Returns its id (for cancel). */
  submit(job: GenerateJob, handlers: JobHandlers): number {
    const id = this.nextId++;
    this.jobs.set(id, handlers);
    this.post({ type: 'generate', id, job });
    return id;
  }

  /** Stop a job: its queued sequences are dropped and its slots freed (end follows). */
  cancel(id: number): void {
    if (this.jobs.has(id)) this.post({ type: 'cancel', id });
  }

  /** A tokenize / detokenize request; resolves with the worker's result. */
  request(msg: DistributiveOmit<Request, 'id'>): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.replies.set(id, { resolve, reject });
      this.post({ ...msg, id } as Request);
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.worker.terminate();
  }

  private post(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  private route(m: FromWorker): void {
    switch (m.type) {
      case 'accepted':
        this.jobs.get(m.id)?.accepted(m.promptTokens);
        break;
      case 'events':
        for (const e of m.events) this.jobs.get(e.id)?.event(e);
        break;
      case 'failed': {
        const err = ApiError.from(m.error);
        const reply = this.replies.get(m.id);
        if (reply) {
          this.replies.delete(m.id);
          reply.reject(err);
        } else {
          this.jobs.get(m.id)?.failed(err);
        }
        break;
      }
      case 'end': {
        const h = this.jobs.get(m.id);
        this.jobs.delete(m.id);
        h?.end();
        break;
      }
      case 'reply': {
        const reply = this.replies.get(m.id);
        this.replies.delete(m.id);
        reply?.resolve(m.result);
        break;
      }
      default:
        break;
    }
  }
}
