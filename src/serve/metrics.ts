/**
 * The server's counters in Prometheus' text format (GET /metrics).
 *
 *   const m = new ServerMetrics();
 *   m.request('/v1/completions', 200);
 *   m.firstToken(0.042);            // seconds from the request to its first generated token
 *   m.generated(5);                 // tokens generated (feeds the tokens/s gauge: the last 10 s)
 *   m.text({ running: 2, queued: 1, ready: true });   // '# HELP llmts_requests_total ...'
 */

const TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** seconds of history behind the tokens/s gauge */
const RATE_WINDOW_S = 10;

class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Array<number>(bounds.length).fill(0);
  }

  observe(v: number): void {
    for (let i = 0; i < this.bounds.length; i++) if (v <= this.bounds[i]) this.counts[i]++;
    this.sum += v;
    this.count++;
  }

  lines(name: string): string[] {
    const out = this.bounds.map((b, i) => `${name}_bucket{le="${b}"} ${this.counts[i]}`);
    out.push(`${name}_bucket{le="+Inf"} ${this.count}`, `${name}_sum ${this.sum}`, `${name}_count ${this.count}`);
    return out;
  }
}

export interface Gauges {
  /** requests accepted by the worker and not finished */
  running: number;
  /** sequences waiting for a slot */
  queued: number;
  ready: boolean;
}

export class ServerMetrics {
  private readonly requests = new Map<string, number>();
  private promptTokens = 0;
  private generatedTokens = 0;
  private readonly ttft = new Histogram(TTFT_BUCKETS);
  private readonly duration = new Histogram(DURATION_BUCKETS);
  /** tokens generated per whole second (epoch second -> count), the last RATE_WINDOW_S of them */
  private readonly perSecond = new Map<number, number>();

  request(endpoint: string, status: number): void {
    const key = `endpoint="${endpoint}",status="${status}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  prompt(tokens: number): void {
    this.promptTokens += tokens;
  }

  generated(tokens: number, now = Date.now()): void {
    this.generatedTokens += tokens;
    const s = Math.floor(now / 1000);
    this.perSecond.set(s, (this.perSecond.get(s) ?? 0) + tokens);
    for (const k of this.perSecond.keys()) if (k <= s - RATE_WINDOW_S) this.perSecond.delete(k);
  }

  firstToken(seconds: number): void {
    this.ttft.observe(seconds);
  }

  finished(seconds: number): void {
    this.duration.observe(seconds);
  }

  /** Tokens per second over the last RATE_WINDOW_S whole seconds. */
  tokensPerSecond(now = Date.now()): number {
    const s = Math.floor(now / 1000);
    let n = 0;
    for (const [k, v] of this.perSecond) if (k < s && k >= s - RATE_WINDOW_S) n += v;
    return n / RATE_WINDOW_S;
  }

  text(g: Gauges): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, lines: string[]): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines);
    };
    metric('llmts_requests_total', 'counter', 'HTTP requests by endpoint and status', [...this.requests].map(([k, v]) => `llmts_requests_total{${k}} ${v}`));
    metric('llmts_prompt_tokens_total', 'counter', 'prompt tokens of accepted requests', [`llmts_prompt_tokens_total ${this.promptTokens}`]);
    metric('llmts_generated_tokens_total', 'counter', 'tokens generated', [`llmts_generated_tokens_total ${this.generatedTokens}`]);
    metric('llmts_requests_running', 'gauge', 'generation requests in the worker (decoding or queued)', [`llmts_requests_running ${g.running}`]);
    metric('llmts_queue_depth', 'gauge', 'sequences waiting for a decoding slot', [`llmts_queue_depth ${g.queued}`]);
    metric('llmts_tokens_per_second', 'gauge', `tokens generated per second over the last ${RATE_WINDOW_S} s`, [`llmts_tokens_per_second ${this.tokensPerSecond()}`]);
    metric('llmts_time_to_first_token_seconds', 'histogram', 'seconds from a request to its first generated token', this.ttft.lines('llmts_time_to_first_token_seconds'));
    metric('llmts_request_duration_seconds', 'histogram', 'seconds from a generation request to its last byte', this.duration.lines('llmts_request_duration_seconds'));
    metric('llmts_model_ready', 'gauge', '1 once the models are loaded', [`llmts_model_ready ${g.ready ? 1 : 0}`]);
    return out.join('\n') + '\n';
  }
}
