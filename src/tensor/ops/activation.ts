/** Activations: GELU (tanh approximation), SiLU, SwiGLU = silu(gate) * up. */
import { backend } from '../../backend/index.js';
import { Tensor, record, shapeError, shapeToString } from '../tensor.js';

export function gelu(x: Tensor): Tensor {
  const be = backend();
  const out = Tensor.empty(x.shape);
  be.geluForward(x.data, out.data, x.size);
  return record(out, [x], () => be.geluBackward(x.data, out.grad!, x.ensureGrad(), x.size));
}

export function silu(x: Tensor): Tensor {
  const be = backend();
  const out = Tensor.empty(x.shape);
  be.siluForward(x.data, out.data, x.size);
  return record(out, [x], () => be.siluBackward(x.data, out.grad!, x.ensureGrad(), x.size));
}

export function swiglu(gate: Tensor, up: Tensor): Tensor {
  if (gate.size !== up.size) shapeError('swiglu', `gate ${shapeToString(gate.shape)} and up ${shapeToString(up.shape)} differ`);
  const be = backend();
  const out = Tensor.empty(gate.shape);
  be.swigluForward(gate.data, up.data, out.data, gate.size);
  return record(out, [gate, up], () => {
    be.swigluBackward(
      gate.data, up.data, out.grad!,
      gate.requiresGrad ? gate.ensureGrad() : null,
      up.requiresGrad ? up.ensureGrad() : null,
      gate.size,
    );
  });
}
