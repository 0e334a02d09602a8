/** Moved: the checkpoint format lives with the formats (src/formats/checkpoint.ts). */
export * from '../formats/checkpoint.js';
