/**
 * selectRows: the picked rows, their gradient scattered back (repeated rows add up), checked
 * against float64 central differences, and bad indices refused.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, selectRows, sum } from '../../src/tensor/index.js';
import { gradcheck, param } from '../helpers/gradcheck.js';

describe('selectRows', () => {
  it('copies the rows asked for, in that order', () => {
    const x = Tensor.fromArray(Array.from({ length: 2 * 3 * 4 }, (_, i) => i), [2, 3, 4]); // 6 rows of 4
    const y = selectRows(x, Int32Array.from([5, 0, 2, 5]));
    assert.deepEqual(y.shape, [4, 4]);
    assert.deepEqual([...y.data], [20, 21, 22, 23, 0, 1, 2, 3, 8, 9, 10, 11, 20, 21, 22, 23]);
  });

  it('gradient: rows read twice get both gradients, rows never read get none', () => {
    const x = Tensor.fromArray(Array.from({ length: 12 }, (_, i) => i / 10), [3, 4], true);
    sum(selectRows(x, Int32Array.from([2, 2, 0]))).backward();
    assert.deepEqual([...x.grad!], [1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2]);
  });

  it('gradient check (float64), 3-D input', () => {
    gradcheck('selectRows', (r) => [param(r, [2, 5, 3])], ([x]) => selectRows(x, Int32Array.from([9, 0, 4, 4, 7])));
  });

  it('refuses a row outside the input', () => {
    const x = Tensor.zeros([4, 2]);
    assert.throws(() => selectRows(x, Int32Array.from([0, 4])), /row 4 at index 1 is outside the 4 rows/);
    assert.throws(() => selectRows(x, Int32Array.from([-1])), /row -1/);
  });
});
