/** Reference dropout mask: Rng.fillDropoutMask from the given state words (see Backend.dropoutMask). */
import { Rng } from '../../util/rng.js';

export function dropoutMask(out: Float32Array, n: number, p: number, keep: number, state: Int32Array): void {
  const rng = new Rng(0);
  rng.setState({ s: [state[0] >>> 0, state[1] >>> 0, state[2] >>> 0, state[3] >>> 0], spare: null });
  rng.fillDropoutMask(out.subarray(0, n), p, keep);
  const s = rng.getState().s;
  for (let i = 0; i < 4; i++) state[i] = s[i] | 0;
}
