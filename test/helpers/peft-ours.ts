/**
 * The adapter llm.ts saves for the PEFT parity fixture (the direction llm.ts -> PEFT): a LoRA
 * model on ALL the family's linear modules over the fixture's tiny base
 * (test/fixtures/peft/<family>/base, saved by transformers), with A as loraLayers draws it and B
 * filled from a seeded uniform generator (so the adapter changes the logits). Deterministic: the
 * same tensors, bit for bit, every time and on every machine (uniform draws only, no Math.log).
 *
 *   const model = ourFixtureLoraModel('gpt2');   // Transformer with LoRA layers, eval mode
 *   saveOurFixtureAdapter('gpt2', dir);           // what scripts/make_peft_fixture.py hands to PEFT
 *
 * scripts/make-peft-ours-adapter.mjs writes test/fixtures/peft/<family>/ours/adapter with it for
 * both families; scripts/make_peft_fixture.py runs that, has PEFT load the adapter and stores
 * PEFT's logits next to it (ours/logits.json).
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importHfCheckpoint } from '../../src/formats/hf-checkpoint.js';
import { saveLoraAdapter } from '../../src/formats/peft.js';
import { LORA_MODULES, loraLayers, loraLinears } from '../../src/model/lora.js';
import { Transformer } from '../../src/model/transformer.js';
import { Rng } from '../../src/util/rng.js';

export const PEFT_FIXTURES = fileURLToPath(new URL('../../../test/fixtures/peft/', import.meta.url));
export type FixtureFamily = 'llama' | 'gpt2';

/** Our LoRA model over the fixture base: r 4, alpha 8, every linear module; rsLoRA for GPT-2. */
export function ourFixtureLoraModel(family: FixtureFamily): Transformer {
  const { config, params } = importHfCheckpoint(join(PEFT_FIXTURES, family, 'base'));
  const model = new Transformer(config, params, {
    layers: loraLayers({ r: 4, alpha: 8, dropout: 0, targets: [...LORA_MODULES[family]], rslora: family === 'gpt2', rng: new Rng(family === 'llama' ? 11 : 12) }),
  });
  const rng = new Rng(family === 'llama' ? 21 : 22);
  for (const l of loraLinears(model)) for (let i = 0; i < l.B.size; i++) l.B.data[i] = (2 * rng.uniform() - 1) * 0.6;
  model.freeze((n) => !n.includes('.lora_'));
  model.eval();
  return model;
}

/** Save ourFixtureLoraModel(family)'s adapter in dir (PEFT layout). */
export function saveOurFixtureAdapter(family: FixtureFamily, dir: string): void {
  saveLoraAdapter(dir, ourFixtureLoraModel(family), { baseModelNameOrPath: `test/fixtures/peft/${family}/base` });
}
