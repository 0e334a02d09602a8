// Writes test/fixtures/peft/{llama,gpt2}/ours/adapter: the LoRA adapter llm.ts saves for the PEFT
// parity fixture (test/helpers/peft-ours.ts). Needs the build: npm run build first.
// scripts/make_peft_fixture.py runs this, then has PEFT load the adapters (ours/logits.json).
import { join } from 'node:path';
import { PEFT_FIXTURES, saveOurFixtureAdapter } from '../dist/test/helpers/peft-ours.js';

for (const family of ['llama', 'gpt2']) {
  const dir = join(PEFT_FIXTURES, family, 'ours', 'adapter');
  saveOurFixtureAdapter(family, dir);
  process.stdout.write(`wrote ${dir}\n`);
}
