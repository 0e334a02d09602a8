/**
 * The commands of llmts, each loaded only when it runs. A command module exports its flag
 * table (CommandSpec) and a run function; a command group (tokenizer) exports subcommands.
 *
 *   const cmd = await COMMANDS.run();   // { spec, run }
 *   helpText(cmd.spec);
 */
import type { CommandSpec, Flags } from './flags.js';

/** What a command module exports: its flag table and what it does with the parsed flags. */
export interface CommandModule {
  spec: CommandSpec;
  run: (f: Flags) => Promise<void>;
}

/** A command with subcommands (llmts tokenizer train|encode|decode). */
export interface CommandGroup {
  name: string;
  subcommands: Record<string, CommandModule>;
  help: string;
}

export type Loaded = CommandModule | CommandGroup;

export const COMMANDS: Record<string, () => Promise<Loaded>> = {
  train: async () => import('./train.js').then((m) => m.TRAIN),
  sample: async () => import('./sample.js').then((m) => m.SAMPLE),
  run: async () => import('./run.js').then((m) => m.RUN),
  chat: async () => import('./chat.js').then((m) => m.CHAT),
  tokenizer: async () => import('./tokenizer.js').then((m) => m.TOKENIZER),
  convert: async () => import('./convert.js').then((m) => m.CONVERT),
  info: async () => import('./info.js').then((m) => m.INFO),
  sft: async () => import('./sft.js').then((m) => m.SFT),
  merge: async () => import('./merge.js').then((m) => m.MERGE),
  reward: async () => import('./reward.js').then((m) => m.REWARD),
  dpo: async () => import('./dpo.js').then((m) => m.DPO),
  ppo: async () => import('./ppo.js').then((m) => m.PPO),
  data: async () => import('./data.js').then((m) => m.DATA),
  serve: async () => import('./serve.js').then((m) => m.SERVE),
};

