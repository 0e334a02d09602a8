/**
 * An exact-match reward for `llmts ppo --reward` on tasks with one right answer (GRPO on
 * verifiable tasks): 1 when the completion, trimmed, equals the prompt row's reference answer,
 * trimmed; 0 otherwise. The same rule as src/eval/exact-match.ts's held-out score.
 *
 *   {"prompt": "What is 23 + 45?", "answer": "68"}          prompt rows: the answer is meta.answer
 *   {"instruction": "What is 23 + 45?", "output": "68"}     Alpaca rows: output becomes meta.answer
 *   llmts ppo -m out/sft --algo grpo --reward recipes/rewards/exact-match.mjs --prompts rows.jsonl -o out/grpo
 *
 * A row without an answer is an error (thrown; llmts ppo stops with it on one line).
 */
export function reward(prompt, completion, meta) {
  const answer = meta.answer;
  if (typeof answer !== 'string' && typeof answer !== 'number') {
    throw new Error(`the prompt row of ${JSON.stringify(prompt.slice(0, 40))} has no "answer" (or Alpaca "output") field to compare with`);
  }
  return completion.trim() === String(answer).trim() ? 1 : 0;
}
