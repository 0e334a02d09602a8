/**
 * llmts chat: an interactive multi-turn chat with a model, answers streamed as they are made.
 *
 *   llmts chat out/shakespeare --template qa --system 'You are a poet.' --temperature 0.7
 *   printf 'hello\nhow are you?\n' | llmts chat path/to/hf-model   # piped: one message per line
 */
import { createInterface } from 'node:readline';
import { CHAT_TEMPLATE_NAMES, chatTemplate, chooseModelChatTemplate, encodeChat } from '../chat/index.js';
import { ChatSession } from '../generate/chat-session.js';
import type { GenerationStats } from '../generate/generate.js';
import { LlmError } from '../util/errors.js';
import type { CommandModule } from './commands.js';
import type { CommandSpec, Flags } from './flags.js';
import { loadModelForInference } from './run.js';
import { samplingFlags, samplingOptions } from './sampling-flags.js';
import { ADAPTER_FLAG, contextSize, CTX_FLAG, MODEL_FLAGS, modelPath, THREADS_FLAG } from './shared-flags.js';

const CHAT_SPEC: CommandSpec = {
  name: 'chat',
  usage: 'MODEL [flags]',
  summary: `Chat with a model: type a message, the answer streams back; earlier turns are part of each
prompt (the oldest are dropped when the context is full; the system prompt stays).
MODEL is an llm.ts checkpoint (file or a training run's directory), a Hugging Face
model directory or a GGUF file. Piped stdin works too: one message per line.`,
  flags: [
    { name: 'template', kind: 'string', choices: CHAT_TEMPLATE_NAMES, defaultText: "the model's own, else chatml for a tokenizer with ChatML tokens, else qa", help: 'chat template', group: 'Chat' },
    { name: 'system', kind: 'string', help: 'system prompt', group: 'Chat' },
    { name: 'no-prompt-cache', kind: 'boolean', help: 'prefill the whole conversation every turn (default: keep the KV cache between turns and prefill only what follows the common prefix)', group: 'Chat' },
    { name: 'verbose', kind: 'boolean', help: 'per answer on stderr: prompt tokens, reused tokens, prefill time, tok/s', group: 'Chat' },
    ...MODEL_FLAGS, ADAPTER_FLAG, CTX_FLAG,
    ...samplingFlags(),
    THREADS_FLAG,
  ],
  notes: `In the chat:
  /reset               forget the conversation (the system prompt stays)
  /system TEXT         set the system prompt (/system alone removes it)
  /help                this list
  /exit                leave (or Ctrl-D); Ctrl-C stops an answer, or leaves at the prompt`,
};

const IN_CHAT_HELP = `/reset  forget the conversation | /system TEXT  set the system prompt (alone: remove) | /help | /exit (or Ctrl-D)
Ctrl-C stops an answer; at the prompt it leaves.
`;

/** The --verbose line of one answer. */
export function turnStatsLine(turn: number, s: Readonly<GenerationStats>, finishReason: string | null): string {
  const tps = s.decodeMs > 0 ? (1000 * s.generatedTokens) / s.decodeMs : 0;
  return `llmts chat: turn ${turn}: ${s.promptTokens} prompt tokens (${s.reusedTokens} reused, ${s.promptTokens - s.reusedTokens} prefilled in `
    + `${s.prefillMs.toFixed(1)} ms), ${s.generatedTokens} generated at ${tps.toFixed(1)} tok/s, stopped: ${finishReason ?? 'unknown'}\n`;
}

async function chatCommand(f: Flags): Promise<void> {
  const path = modelPath(f, 'llmts chat MODEL (type messages once it starts)');
  const opts = samplingOptions(f, 1);
  const { model, tokenizer, chatTemplate: own } = await loadModelForInference(path, f.string('tokenizer'), f.string('adapter'));
  const notice = (s: string): void => void process.stderr.write(`(${s})\n`);
  let templateName = f.string('template');
  let template = templateName !== undefined ? chatTemplate(templateName) : undefined;
  if (template === undefined) {
    const chosen = chooseModelChatTemplate(tokenizer, own);
    template = chosen.template;
    templateName = chosen.name;
    notice(`template ${chosen.name}: ${chosen.reason}; --template chooses another`);
  }
  const session = new ChatSession(model, tokenizer, {
    ...opts,
    template,
    system: f.string('system'),
    cachePrompt: !f.bool('no-prompt-cache'),
    contextSize: contextSize(f, model.config.blockSize),
    onDrop: (d) => notice(`dropped ${d.turns} earlier turn${d.turns === 1 ? '' : 's'} to fit the ${d.contextSize}-token context`),
  });
  // fail now, not at the first message, when the tokenizer cannot encode the template
  encodeChat(tokenizer, session.template, session.promptMessages(''));

  const tty = process.stdin.isTTY === true;
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: tty, prompt: '> ' });
  const lines: string[] = [];
  let closed = false;
  let wake: (() => void) | null = null;
  let answering: AbortController | null = null;
  const poke = (): void => {
    const w = wake;
    wake = null;
    w?.();
  };
  rl.on('line', (line) => {
    lines.push(line);
    poke();
  });
  rl.on('close', () => {
    closed = true;
    poke();
  });
  rl.on('SIGINT', () => {
    if (answering) answering.abort();
    else rl.close();
  });
  // piped input: Ctrl-C arrives as a signal, not a keypress
  const onSignal = (): void => {
    if (answering) answering.abort();
    else rl.close();
  };
  process.on('SIGINT', onSignal);
  const nextLine = async (): Promise<string | null> => {
    for (;;) {
      if (lines.length > 0) return lines.shift()!;
      if (closed) return null;
      await new Promise<void>((resolve) => { wake = resolve; });
    }
  };

  let turn = 0;
  try {
    if (tty) process.stdout.write(`llmts chat: ${path} (template ${templateName}, context ${session.contextSize} tokens); /help for commands\n`);
    for (;;) {
      if (tty) rl.prompt();
      const raw = await nextLine();
      if (raw === null) break;
      const line = raw.trim();
      if (line === '') continue;
      if (line.startsWith('/')) {
        const [cmd] = line.split(/\s+/, 1);
        const arg = line.slice(cmd.length).trim();
        if (cmd === '/exit' || cmd === '/quit' || cmd === '/bye') break;
        if (cmd === '/reset') {
          session.reset();
          notice('conversation reset');
        } else if (cmd === '/system') {
          session.setSystem(arg);
          notice(arg === '' ? 'system prompt removed' : 'system prompt set');
        } else if (cmd === '/help') {
          process.stdout.write(IN_CHAT_HELP);
        } else {
          notice(`unknown command ${cmd}; /help lists the commands`);
        }
        continue;
      }
      answering = new AbortController();
      try {
        const reply = session.send(line, { signal: answering.signal });
        for await (const piece of reply) process.stdout.write(piece);
        process.stdout.write('\n');
        turn++;
        if (f.bool('verbose')) process.stderr.write(turnStatsLine(turn, reply.stats, reply.finishReason));
        if (reply.finishReason === 'aborted') notice('answer stopped');
        else if (reply.finishReason === 'context') notice('the answer reached the end of the model\'s context');
      } catch (err) {
        if (!(err instanceof LlmError)) throw err;
        notice(`error: ${err.message}`);
      } finally {
        answering = null;
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    if (!closed) rl.close();
    if (tty) process.stdout.write('\n');
  }
}

export const CHAT: CommandModule = { spec: CHAT_SPEC, run: chatCommand };
