/** LayerNorm and RMSNorm over the last dimension (statistics saved for backward). */
import { allocFloats } from '../storage.js';
import { backend } from '../../backend/index.js';
import { Tensor, record, shapeError, shapeToString } from '../tensor.js';

function checkParam(op: string, x: Tensor, p: Tensor | null): void {
  if (p && (p.ndim !== 1 || p.size !== x.lastDim)) {
    shapeError(op, `parameter ${shapeToString(p.shape)} does not match last dim of ${shapeToString(x.shape)}`);
  }
}

/** y = (x - mean) / sqrt(var + eps) * weight + bias */
export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps = 1e-5): Tensor {
  checkParam('layerNorm', x, weight);
  checkParam('layerNorm', x, bias);
  const dim = x.lastDim;
  const rows = x.size / dim;
  const out = Tensor.empty(x.shape);
  const mean = allocFloats(rows);
  const rstd = allocFloats(rows);
  const be = backend();
  be.layerNormForward(x.data, weight?.data ?? null, bias?.data ?? null, out.data, mean, rstd, rows, dim, eps);
  const inputs = [x, weight, bias].filter((t): t is Tensor => t !== null);
  return record(out, inputs, () => {
    be.layerNormBackward(
      out.grad!, x.data, weight?.data ?? null, mean, rstd,
      x.requiresGrad ? x.ensureGrad() : null,
      weight?.requiresGrad ? weight.ensureGrad() : null,
      bias?.requiresGrad ? bias.ensureGrad() : null,
      rows, dim,
    );
  });
}

/** y = x / sqrt(mean(x^2) + eps) * weight */
export function rmsNorm(x: Tensor, weight: Tensor | null, eps = 1e-5): Tensor {
  checkParam('rmsNorm', x, weight);
  const dim = x.lastDim;
  const rows = x.size / dim;
  const out = Tensor.empty(x.shape);
  const rstd = allocFloats(rows);
  const be = backend();
  be.rmsNormForward(x.data, weight?.data ?? null, out.data, rstd, rows, dim, eps);
  const inputs = weight ? [x, weight] : [x];
  return record(out, inputs, () => {
    be.rmsNormBackward(
      out.grad!, x.data, weight?.data ?? null, rstd,
      x.requiresGrad ? x.ensureGrad() : null,
      weight?.requiresGrad ? weight.ensureGrad() : null,
      rows, dim,
    );
  });
}
