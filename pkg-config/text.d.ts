// Types of `jlcm/text` (text.js): the tokenizer module and the sentence
// encoder that joins it to the core module's SentenceModel.
import type { InitInput, SyncInitInput, CalibrationContext, CalibrationOptions, TokenBatch } from "./jlcm.js";
import { Tokenizer } from "./jlcm_text.js";

export { Tokenizer };
export type { TokenBatch };

/** Initialise the text module (fetches jlcm_text_bg.wasm unless given one). Idempotent. */
export default function initText(
  input?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>,
): Promise<unknown>;

/** Initialise the text module from bytes or a compiled module (Node: `{ module: bytes }`). */
export function initTextSync(input: { module: SyncInitInput } | SyncInitInput): unknown;

/** What `loadSentenceEncoder` passes to the two modules' `init` when they are not yet initialised. */
export interface WasmSources {
  core?: { module_or_path: InitInput | Promise<InitInput> };
  text?: { module_or_path: InitInput | Promise<InitInput> };
}

/**
 * A sentence encoder (all-MiniLM-L6-v2-style BERT): the text module's
 * tokenizer plus the core `SentenceModel` on dense or packed weights. Both
 * modules must be initialised (or use `loadSentenceEncoder`).
 */
export class SentenceEncoder {
  constructor(configJson: string, tokenizerJson: Uint8Array, weights: Uint8Array);
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

/** Initialise what is not yet initialised, then build a `SentenceEncoder`: the one-call entry. */
export function loadSentenceEncoder(
  configJson: string, tokenizerJson: Uint8Array, weights: Uint8Array, wasm?: WasmSources,
): Promise<SentenceEncoder>;

/**
 * Calibration from sentences (both modules initialised): a safetensors file
 * of `H = XᵀX/n` per Linear weight, the values of the native
 * `jlcm calibrate` with the same batch size (to f32 summation order).
 */
export function calibrateSentences(
  configJson: string, tokenizerJson: Uint8Array, weights: Uint8Array, sentences: string[],
  options?: CalibrationOptions, context?: CalibrationContext,
): Uint8Array;
