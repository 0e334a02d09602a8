/**
 * Tensor: a Float32Array in row-major order plus a shape, and the reverse-mode autograd
 * machinery. Every op records, on its output, the tensors it read (`inputs`) and a closure
 * (`backwardFn`) that adds the op's contribution to the inputs' gradients. `loss.backward()`
 * orders the recorded graph topologically and runs the closures from the loss back to the leaves.
 *
 *   const w = Tensor.randn([3, 4], rng, 0.02, true);   // a parameter (leaf, requires grad)
 *   const y = matmul(x, w);                             // records the op
 *   const loss = mean(y);
 *   loss.backward();                                    // w.grad now holds d loss / d w
 *
 * Inside `noGrad(() => ...)` nothing is recorded (inference, evaluation).
 */
import { allocFloats, allocFloatsUninit, allocPersistentFloats } from './storage.js';
import type { Rng } from '../util/rng.js';

let gradEnabled = true;

/** Run fn without recording the autograd graph (inference, evaluation, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}

export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeToString(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export class Tensor {
  readonly data: Float32Array;
  readonly shape: readonly number[];
  readonly size: number;
  private gradBuffer: Float32Array | null = null;
  /**
   * Set by zeroGrad(): the buffer's old values count as zeros. The next read of .grad fills it
   * with zeros; a kernel that asks gradToWrite() overwrites it instead (PyTorch's set_to_none
   * without giving the memory back: no pass that writes zeros over every gradient each step).
   */
  private gradStale = false;

  /** d(loss)/d(this), same layout as data; allocated on first use by backward. */
  get grad(): Float32Array | null {
    if (this.gradStale) {
      this.gradBuffer!.fill(0);
      this.gradStale = false;
    }
    return this.gradBuffer;
  }

  set grad(g: Float32Array | null) {
    this.gradBuffer = g;
    this.gradStale = false;
  }
  requiresGrad: boolean;
  /** The tensors the producing op read; empty for leaves. */
  inputs: Tensor[] = [];
  /** Adds this op's contribution to the inputs' .grad, reading this.grad. */
  backwardFn: (() => void) | null = null;
  /** Optional name (parameter name for model weights). */
  name: string | undefined;
  /**
   * Counts in-place updates of data (AdamW.step, merging an adapter), so copies derived from it
   * (the bf16 weight copy, ops/bf16-gemm.ts) know when to refresh. Code that changes a parameter's
   * data in place while a model computes in bf16 bumps it.
   */
  version = 0;

  constructor(data: Float32Array, shape: readonly number[], requiresGrad = false) {
    const size = shapeSize(shape);
    if (data.length !== size) {
      throw new Error(`Tensor: data has ${data.length} elements but shape ${shapeToString(shape)} needs ${size}`);
    }
    this.data = data;
    this.shape = Object.freeze([...shape]);
    this.size = size;
    this.requiresGrad = requiresGrad;
  }

  static zeros(shape: readonly number[], requiresGrad = false): Tensor {
    return new Tensor(allocFloats(shapeSize(shape)), shape, requiresGrad);
  }

  /** A tensor whose contents will be overwritten (op outputs); not zeroed when recycled. */
  static empty(shape: readonly number[]): Tensor {
    return new Tensor(allocFloatsUninit(shapeSize(shape)), shape);
  }

  static full(shape: readonly number[], value: number, requiresGrad = false): Tensor {
    return new Tensor(allocFloats(shapeSize(shape)).fill(value), shape, requiresGrad);
  }

  static fromArray(values: ArrayLike<number>, shape: readonly number[], requiresGrad = false): Tensor {
    const data = allocFloats(values.length);
    for (let i = 0; i < values.length; i++) data[i] = values[i];
    return new Tensor(data, shape, requiresGrad);
  }

  /** Normal(0, std) entries from a seeded generator. */
  static randn(shape: readonly number[], rng: Rng, std = 1, requiresGrad = false): Tensor {
    const t = Tensor.zeros(shape, requiresGrad);
    for (let i = 0; i < t.size; i++) t.data[i] = rng.normal() * std;
    return t;
  }

  get ndim(): number {
    return this.shape.length;
  }

  /** Size of the last dimension. */
  get lastDim(): number {
    return this.shape[this.shape.length - 1];
  }

  /** The single value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new Error(`item(): tensor has shape ${shapeToString(this.shape)}, not one element`);
    return this.data[0];
  }

  /**
   * The gradient buffer, allocated (zeros) on first use. A leaf that does not require grad (a
   * frozen parameter) never gets one: ops skip such inputs, and should a recorded graph still
   * reach it (frozen after the forward pass), it gets a throwaway buffer, not a .grad.
   */
  ensureGrad(): Float32Array {
    if (this.grad !== null) return this.grad;
    // an intermediate's gradient is scoped; a leaf's (a parameter's) outlives the step
    if (this.backwardFn !== null) return (this.grad = allocFloats(this.size));
    if (!this.requiresGrad) return allocFloats(this.size);
    return (this.grad = allocPersistentFloats(this.size));
  }

  /**
   * The gradient buffer for a kernel that writes every element of it when the buffer is new (a
   * product with beta 0 instead of 1): an intermediate's new gradient comes without the zero
   * fill, and `fresh` says so; otherwise ensureGrad() (zeros when new) and fresh false.
   */
  gradToWrite(): { grad: Float32Array; fresh: boolean } {
    if (this.gradStale) {
      this.gradStale = false;
      return { grad: this.gradBuffer!, fresh: true };
    }
    if (this.gradBuffer === null && this.backwardFn !== null) return { grad: (this.grad = allocFloatsUninit(this.size)), fresh: true };
    return { grad: this.ensureGrad(), fresh: false };
  }

  /** The gradient becomes zeros (lazily: see gradStale). */
  zeroGrad(): void {
    if (this.gradBuffer !== null) this.gradStale = true;
  }

  /** A tensor sharing this one's data, cut off from the graph. */
  detach(): Tensor {
    return new Tensor(this.data, this.shape, false);
  }

  /**
   * Back-propagate from this tensor. A scalar gets seed gradient 1 unless `seed` is given.
   * Gradients accumulate into the .grad of every leaf that requires grad; the graph's
   * intermediate gradients and closures are released afterwards.
   */
  backward(seed?: Float32Array): void {
    if (!this.requiresGrad) throw new Error('backward(): this tensor does not depend on anything that requires grad');
    if (seed === undefined && this.size !== 1) {
      throw new Error(`backward(): a seed gradient is needed for non-scalar shape ${shapeToString(this.shape)}`);
    }
    const order = topologicalOrder(this);
    const g = this.ensureGrad();
    if (seed) for (let i = 0; i < g.length; i++) g[i] += seed[i];
    else g[0] += 1;
    for (let i = order.length - 1; i >= 0; i--) {
      const node = order[i];
      if (node.backwardFn && node.grad) node.backwardFn();
    }
    for (const node of order) {
      if (node.backwardFn) {
        node.backwardFn = null;
        node.inputs = [];
        node.grad = null;
      }
    }
  }
}

/** Nodes reachable from root, each after all of its inputs (iterative DFS: graphs can be deep). */
function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  const stack: Array<[Tensor, number]> = [[root, 0]];
  visited.add(root);
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const [node, next] = top;
    if (next < node.inputs.length) {
      top[1] = next + 1;
      const child = node.inputs[next];
      if (child.requiresGrad && !visited.has(child)) {
        visited.add(child);
        stack.push([child, 0]);
      }
    } else {
      stack.pop();
      order.push(node);
    }
  }
  return order;
}

/**
 * Attach an op's backward closure to its output when any input needs a gradient.
 * Ops call this once, after computing the forward result.
 */
export function record(out: Tensor, inputs: Tensor[], backwardFn: () => void): Tensor {
  if (!gradEnabled) return out;
  let needed = false;
  for (const t of inputs) if (t.requiresGrad) needed = true;
  if (!needed) return out;
  out.requiresGrad = true;
  out.inputs = inputs;
  out.backwardFn = backwardFn;
  return out;
}

/** Throw a shape error naming the op. */
export function shapeError(op: string, message: string): never {
  throw new Error(`${op}: ${message}`);
}
