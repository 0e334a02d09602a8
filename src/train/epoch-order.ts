/**
 * Shuffled epochs over n items, resumable exactly: each epoch's permutation comes from a seed drawn
 * from the loop's data rng when the epoch starts, and state() = { epoch, position, epochSeed } is
 * all a checkpoint needs to draw the very same items after a resume.
 *
 *   const order = new EpochOrder(examples.length, 'preference pairs');
 *   const i = order.next(rng);          // index of the next item
 *   order.epochs;                       // 1.25 after one and a quarter passes
 *   objective.state = () => order.state();
 */
import { LlmError } from '../util/errors.js';
import { Rng } from '../util/rng.js';

export interface EpochOrderState {
  epoch: number;
  /** items of this epoch's order already drawn */
  position: number;
  /** seeds this epoch's permutation */
  epochSeed: number;
}

export class EpochOrder {
  private epoch = 0;
  private position = 0;
  private epochSeed = 0;
  private order: Uint32Array | null = null;

  /** `what` names the items in errors ('training examples'). */
  constructor(readonly n: number, readonly what: string) {
    if (!(Number.isInteger(n) && n >= 1)) throw new LlmError(`no ${what} to train on`);
  }

  /** Completed passes (fractional). */
  get epochs(): number {
    return this.epoch + this.position / this.n;
  }

  /** The next item's index; a new epoch (new permutation) starts when one is used up. */
  next(rng: Rng): number {
    if (this.order === null || this.position >= this.n) {
      if (this.order !== null) {
        this.epoch++;
        this.position = 0;
      }
      this.epochSeed = rng.nextU32();
      this.order = permutation(this.n, this.epochSeed);
    }
    return this.order[this.position++];
  }

  /** The next n of `items` (items.length === this.n), across an epoch boundary when needed. */
  take<T>(items: readonly T[], n: number, rng: Rng): T[] {
    if (items.length !== this.n) throw new LlmError(`EpochOrder over ${this.n} ${this.what} given ${items.length}`);
    return Array.from({ length: n }, () => items[this.next(rng)]);
  }

  state(): EpochOrderState {
    return { epoch: this.epoch, position: this.position, epochSeed: this.epochSeed };
  }

  restore(state: unknown): void {
    if (state === undefined) return;
    const s = state as Partial<EpochOrderState>;
    if (typeof s.epoch !== 'number' || typeof s.position !== 'number' || typeof s.epochSeed !== 'number') {
      throw new LlmError(`the checkpoint's epoch state is not { epoch, position, epochSeed }`);
    }
    if (s.position > this.n) {
      throw new LlmError(`the checkpoint stopped at item ${s.position} of an epoch, but the data now has ${this.n} ${this.what}; resume with the same data`);
    }
    this.epoch = s.epoch;
    this.position = s.position;
    this.epochSeed = s.epochSeed;
    this.order = s.position === 0 && s.epoch === 0 && s.epochSeed === 0 ? null : permutation(this.n, s.epochSeed);
  }
}

/** A Fisher-Yates permutation of 0..n-1 from a seed. */
export function permutation(n: number, seed: number): Uint32Array {
  const rng = new Rng(seed);
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}
