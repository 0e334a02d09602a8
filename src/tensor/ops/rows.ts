/**
 * Row selection: x (..., C) seen as R = size / C rows of C, and row indices -> (n, C), row i of
 * the output being row rows[i] of x. Backward adds each output row's gradient into the row it
 * was read from (an index may repeat: its gradients add up).
 *
 *   const h = model.hidden(tokens, B, T);        // (B, T, C)
 *   const picked = selectRows(h, trainedRows);   // (n, C): only the positions that have a target
 */
import { Tensor, record, shapeError, shapeToString } from '../tensor.js';

export function selectRows(x: Tensor, rows: Int32Array): Tensor {
  if (x.ndim === 0) shapeError('selectRows', 'the input must have a row dimension, got a scalar');
  const C = x.lastDim;
  const R = C === 0 ? 0 : x.size / C;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    if (!Number.isInteger(r) || r < 0 || r >= R) shapeError('selectRows', `row ${r} at index ${i} is outside the ${R} rows of ${shapeToString(x.shape)}`);
  }
  const n = rows.length;
  const out = Tensor.empty([n, C]);
  const src = x.data, dst = out.data;
  for (let i = 0; i < n; i++) dst.set(src.subarray(rows[i] * C, rows[i] * C + C), i * C); // row copies (memcpy)
  return record(out, [x], () => {
    const g = out.grad!;
    const gx = x.ensureGrad();
    for (let i = 0; i < n; i++) {
      const o = rows[i] * C, go = i * C;
      for (let c = 0; c < C; c++) gx[o + c] += g[go + c];
    }
  });
}
