// Types of `jlcm/text` (text.js): the tokenizer (`@huggingface/tokenizers`,
// set up as sentence-transformers does) and the sentence encoder that joins
// it to the core module's SentenceModel.
import type { InitInput, CalibrationContext, CalibrationOptions, TokenBatch } from "./jlcm.js";

export type { TokenBatch };

/** `tokenizer.json` / `tokenizer_config.json`: bytes, text, or the parsed object. */
export type JsonInput = Uint8Array | ArrayBuffer | string | object;

/** Tokens per sentence at most unless told: 256 (all-MiniLM-L6-v2's `max_seq_length`). */
export const DEFAULT_MAX_TOKENS: number;

/**
 * A Hugging Face tokenizer (`tokenizer.json`): special tokens added,
 * truncation to `maxTokens` (special tokens included), no padding. Errors
 * are `Error`s with `code: "E_TOKENIZER"`.
 */
export class Tokenizer {
  constructor(tokenizerJson: JsonInput, maxTokens?: number, tokenizerConfig?: JsonInput);
  /** Tokens per sentence at most. */
  readonly maxTokens: number;
  /** Token ids of one text. */
  encodeOne(text: string): number[];
  /** Token ids of each text: all ids concatenated, and each text's count. */
  encode(texts: string[]): TokenBatch;
  free(): void;
  [Symbol.dispose](): void;
}

/** What `loadSentenceEncoder` takes beside the model files. */
export interface LoadOptions {
  /** What the core `init` takes, if the core module is not yet initialised (Node: the bytes). */
  core?: { module_or_path: InitInput | Promise<InitInput> };
  /** tokenizer_config.json, if the model has one. */
  tokenizerConfig?: JsonInput;
}

/**
 * A sentence encoder (all-MiniLM-L6-v2-style BERT): the
 * tokenizer plus the core `SentenceModel` on dense or packed weights. The core
 * module must be initialised (or use `loadSentenceEncoder`).
 */
export class SentenceEncoder {
  constructor(configJson: string, tokenizerJson: JsonInput, weights: Uint8Array, tokenizerConfig?: JsonInput);
  /** Width of one embedding. */
  readonly hiddenSize: number;
  /** Linear layers running on packed weights. */
  readonly packedLinears: number;
  /** Linear layers in the model. */
  readonly totalLinears: number;
  /** Bytes of the weights held in memory. */
  readonly weightBytes: number;
  /** Token ids of `texts`. */
  tokenize(texts: string[]): TokenBatch;
  /** `texts.length x hiddenSize` embeddings, row-major, mean-pooled and L2-normalised. */
  embed(texts: string[]): Float32Array;
  /** Calibration matrices from `sentences` as a safetensors file (see `computeCalibration`). */
  computeCalibration(sentences: string[], options?: CalibrationOptions, context?: CalibrationContext): Uint8Array;
  free(): void;
  [Symbol.dispose](): void;
}

/** Initialise the core module if needed, then build a `SentenceEncoder`: the one-call entry. */
export function loadSentenceEncoder(
  configJson: string, tokenizerJson: JsonInput, weights: Uint8Array, options?: LoadOptions,
): Promise<SentenceEncoder>;

/**
 * Calibration from sentences (the core module initialised): a safetensors file
 * of `H = XᵀX/n` per Linear weight, the values of the native
 * `jlcm calibrate` with the same batch size (to f32 summation order).
 */
export function calibrateSentences(
  configJson: string, tokenizerJson: JsonInput, weights: Uint8Array, sentences: string[],
  options?: CalibrationOptions, context?: CalibrationContext,
): Uint8Array;
