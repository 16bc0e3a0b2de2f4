// `jlcm/text`: text in, for the sentence-embedding runtime and calibration.
//
// The tokenizer (the `tokenizers` crate, from tokenizer.json) is the package's
// second wasm module, jlcm_text_bg.wasm, loaded only when this entry is
// initialised; the model itself runs in the core module (`jlcm`). Both
// modules must be initialised: `loadSentenceEncoder` does it in one call.

import initCore, { SentenceModel, computeCalibration } from "./jlcm.js";
import initTextModule, { initSync as initTextModuleSync, Tokenizer } from "./jlcm_text.js";

export { Tokenizer };

/**
 * Initialise the text module (fetches jlcm_text_bg.wasm next to this file
 * unless given `{ module_or_path }`, as the core `init`). Idempotent.
 */
export default function initText(input) {
  return initTextModule(input);
}

/** Initialise the text module from its bytes or a compiled module (Node: `{ module: bytes }`). */
export function initTextSync(input) {
  return initTextModuleSync(input);
}

/**
 * A sentence encoder: the text module's tokenizer plus the core module's
 * `SentenceModel` (dense or packed weights). Both modules must be
 * initialised; `loadSentenceEncoder` does that for you.
 */
export class SentenceEncoder {
  /**
   * @param {string} configJson  config.json text
   * @param {Uint8Array} tokenizerJson  tokenizer.json bytes
   * @param {Uint8Array} weights  dense safetensors or a jlcm packed file
   */
  constructor(configJson, tokenizerJson, weights) {
    this.model = new SentenceModel(configJson, weights);
    try {
      this.tokenizer = new Tokenizer(tokenizerJson, this.model.maxTokens);
    } catch (e) {
      this.model.free();
      throw e;
    }
  }

  /** Width of one embedding. */
  get hiddenSize() { return this.model.hiddenSize; }
  /** Linear layers running on packed weights. */
  get packedLinears() { return this.model.packedLinears; }
  /** Linear layers in the model. */
  get totalLinears() { return this.model.totalLinears; }
  /** Bytes of the weights held in memory. */
  get weightBytes() { return this.model.weightBytes; }

  /** Token ids of `texts` (a `TokenBatch`). */
  tokenize(texts) { return this.tokenizer.encode(texts); }

  /** Embeddings of `texts`: `texts.length x hiddenSize`, row-major, each mean-pooled and L2-normalised. */
  embed(texts) { return this.model.embedTokens(this.tokenizer.encode(texts)); }

  /**
   * Calibration matrices (`H = XᵀX/n` per Linear weight) from `sentences`,
   * as a safetensors file: see the core `computeCalibration`.
   */
  computeCalibration(sentences, options, context) {
    return this.model.computeCalibration(this.tokenizer.encode(sentences), options, context);
  }

  /** Release both modules' memory. */
  free() {
    this.model?.free();
    this.tokenizer?.free();
    this.model = this.tokenizer = undefined;
  }

  [Symbol.dispose]() { this.free(); }
}

/**
 * One call: initialise whatever is not yet initialised (`wasm.core`,
 * `wasm.text`: what `init` / `initText` take; in Node pass the bytes) and
 * build a `SentenceEncoder`.
 */
export async function loadSentenceEncoder(configJson, tokenizerJson, weights, wasm = {}) {
  await Promise.all([initCore(wasm.core), initText(wasm.text)]);
  return new SentenceEncoder(configJson, tokenizerJson, weights);
}

/**
 * Calibration from sentences: tokenise `sentences` and run the core
 * `computeCalibration` (the native `jlcm calibrate` with the same batch
 * size, to f32 summation order). Returns a safetensors file of the `H` matrices.
 */
export function calibrateSentences(configJson, tokenizerJson, weights, sentences, options, context) {
  const encoder = new SentenceEncoder(configJson, tokenizerJson, weights);
  try {
    return encoder.computeCalibration(sentences, options, context);
  } finally {
    encoder.free();
  }
}
