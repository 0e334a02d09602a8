/** The KV cache lives with the model (src/model/kv-cache.ts); this re-export keeps older imports working. */
export * from '../model/kv-cache.js';
