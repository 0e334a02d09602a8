/**
 * Reading SentencePiece's `tokenizer.model` (a ModelProto protobuf) into a
 * SentencePieceTokenizer.
 *
 *   const tok = readSentencePieceModel('llama2/tokenizer.model');
 *   tok.encode('Hello world');   // [1, 15043, 3186]
 *
 * Fields used (sentencepiece_model.proto): ModelProto.pieces = 1 (repeated SentencePiece
 * {piece = 1, score = 2 (float), type = 3}), trainer_spec = 2 (model_type = 3, byte_fallback =
 * 35, unk_id = 40, bos_id = 41, eos_id = 42, pad_id = 43, unk_surface = 44,
 * treat_whitespace_as_suffix = 24), normalizer_spec = 3 (name = 1, precompiled_charsmap = 2,
 * add_dummy_prefix = 3, remove_extra_whitespaces = 4, escape_whitespaces = 5), with proto2
 * defaults for absent fields. Only BPE models (model_type 2) with no precompiled normalisation
 * rules (normalizer 'identity', as Llama 1/2) are accepted; anything else is a clear LlmError
 * rather than silently different ids.
 */
import { readFileSync } from 'node:fs';
import { ProtoReader, WireType } from '../formats/protobuf.js';
import { LlmError } from '../util/errors.js';
import { PieceType, SentencePieceTokenizer } from './sentencepiece.js';

export interface SentencePieceModelProto {
  pieces: string[];
  scores: Float32Array;
  types: Uint8Array;
  trainer: {
    modelType: number;
    byteFallback: boolean;
    unkId: number;
    bosId: number;
    eosId: number;
    padId: number;
    unkSurface: string;
    treatWhitespaceAsSuffix: boolean;
  };
  normalizer: {
    name: string;
    precompiledCharsmapBytes: number;
    addDummyPrefix: boolean;
    removeExtraWhitespaces: boolean;
    escapeWhitespaces: boolean;
  };
}

const MODEL_TYPES: Record<number, string> = { 1: 'UNIGRAM', 2: 'BPE', 3: 'WORD', 4: 'CHAR' };

/** Decode the ModelProto fields we use. `name` is how errors refer to the bytes. */
export function parseSentencePieceModelProto(bytes: Uint8Array, name: string): SentencePieceModelProto {
  const r = new ProtoReader(bytes, name);
  const pieces: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  const trainer = {
    modelType: 1, byteFallback: false, unkId: 0, bosId: 1, eosId: 2, padId: -1,
    unkSurface: ' \u2047 ', treatWhitespaceAsSuffix: false,
  };
  const normalizer = { name: '', precompiledCharsmapBytes: 0, addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true };
  let sawTrainer = false;
  const expect = (rr: ProtoReader, field: number, wire: number, want: WireType, what: string): void => {
    if (wire !== want) rr.fail(`${what} (field ${field}) has wire type ${wire}, expected ${want}`);
  };
  while (!r.done()) {
    const { field, wire } = r.tag();
    if (field === 1) {
      expect(r, field, wire, WireType.LEN, 'ModelProto.pieces');
      const p = r.message();
      let piece = '';
      let score = 0;
      let type = PieceType.NORMAL as number;
      while (!p.done()) {
        const t = p.tag();
        if (t.field === 1 && t.wire === WireType.LEN) piece = p.string();
        else if (t.field === 2 && t.wire === WireType.I32) score = p.float();
        else if (t.field === 3 && t.wire === WireType.VARINT) type = p.int32();
        else p.skip(t.wire);
      }
      if (type < 1 || type > 6) p.fail(`piece ${pieces.length} (${JSON.stringify(piece)}) has unknown type ${type}`);
      pieces.push(piece);
      scores.push(score);
      types.push(type);
    } else if (field === 2) {
      expect(r, field, wire, WireType.LEN, 'ModelProto.trainer_spec');
      sawTrainer = true;
      const t = r.message();
      while (!t.done()) {
        const f = t.tag();
        if (f.wire === WireType.VARINT && f.field === 3) trainer.modelType = t.int32();
        else if (f.wire === WireType.VARINT && f.field === 35) trainer.byteFallback = t.bool();
        else if (f.wire === WireType.VARINT && f.field === 24) trainer.treatWhitespaceAsSuffix = t.bool();
        else if (f.wire === WireType.VARINT && f.field === 40) trainer.unkId = t.int32();
        else if (f.wire === WireType.VARINT && f.field === 41) trainer.bosId = t.int32();
        else if (f.wire === WireType.VARINT && f.field === 42) trainer.eosId = t.int32();
        else if (f.wire === WireType.VARINT && f.field === 43) trainer.padId = t.int32();
        else if (f.wire === WireType.LEN && f.field === 44) trainer.unkSurface = t.string();
        else t.skip(f.wire);
      }
    } else if (field === 3) {
      expect(r, field, wire, WireType.LEN, 'ModelProto.normalizer_spec');
      const m = r.message();
      while (!m.done()) {
        const f = m.tag();
        if (f.wire === WireType.LEN && f.field === 1) normalizer.name = m.string();
        else if (f.wire === WireType.LEN && f.field === 2) normalizer.precompiledCharsmapBytes = m.bytes().length;
        else if (f.wire === WireType.VARINT && f.field === 3) normalizer.addDummyPrefix = m.bool();
        else if (f.wire === WireType.VARINT && f.field === 4) normalizer.removeExtraWhitespaces = m.bool();
        else if (f.wire === WireType.VARINT && f.field === 5) normalizer.escapeWhitespaces = m.bool();
        else m.skip(f.wire);
      }
    } else {
      r.skip(wire);
    }
  }
  if (pieces.length === 0 || !sawTrainer) {
    throw new LlmError(`${name} is not a SentencePiece model: it has ${pieces.length} pieces and ${sawTrainer ? 'a' : 'no'} trainer_spec (expected a tokenizer.model protobuf)`);
  }
  return { pieces, scores: Float32Array.from(scores), types: Uint8Array.from(types), trainer, normalizer };
}

/** Build the tokenizer from `tokenizer.model` bytes. */
export function sentencePieceFromModelProto(bytes: Uint8Array, name = 'tokenizer.model'): SentencePieceTokenizer {
  const m = parseSentencePieceModelProto(bytes, name);
  const { trainer, normalizer } = m;
  if (trainer.modelType !== 2) {
    throw new LlmError(`${name}: SentencePiece model_type is ${MODEL_TYPES[trainer.modelType] ?? trainer.modelType}; only BPE models (as Llama 1/2) are supported`);
  }
  if (normalizer.precompiledCharsmapBytes > 0) {
    throw new LlmError(`${name}: the normalizer '${normalizer.name}' uses precompiled normalisation rules, which are not supported (only 'identity', as Llama 1/2)`);
  }
  if (trainer.treatWhitespaceAsSuffix) {
    throw new LlmError(`${name}: treat_whitespace_as_suffix is set, which is not supported`);
  }
  const n = m.pieces.length;
  const typed = (id: number, type: PieceType): number | null => (id >= 0 && id < n && m.types[id] === type ? id : null);
  return new SentencePieceTokenizer({
    pieces: m.pieces,
    scores: m.scores,
    types: m.types,
    addDummyPrefix: normalizer.addDummyPrefix,
    removeExtraWhitespaces: normalizer.removeExtraWhitespaces,
    escapeWhitespaces: normalizer.escapeWhitespaces,
    byteFallback: trainer.byteFallback,
    bosId: typed(trainer.bosId, PieceType.CONTROL),
    eosId: typed(trainer.eosId, PieceType.CONTROL),
    addBos: true,
    addEos: false,
    unkSurface: trainer.unkSurface,
  });
}

/** Read a SentencePiece `tokenizer.model` file. */
export function readSentencePieceModel(path: string): SentencePieceTokenizer {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new LlmError(`cannot read SentencePiece model ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return sentencePieceFromModelProto(bytes, path);
}
