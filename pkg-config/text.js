// `jlcm/text`: text in, for the sentence-embedding runtime and calibration.
//
// Tokenisation is Hugging Face's own JavaScript tokenizer,
// `@huggingface/tokenizers` (a dependency of this package, about 21 KB
// gzipped, no wasm), set up as sentence-transformers does: special tokens
// added, truncation to `maxTokens`, no padding. Its ids for all-MiniLM-L6-v2
// are tested equal to the Rust `tokenizers` crate's, which the native CLI
// uses. The model itself runs in the core module (`jlcm`), which must be
// initialised: `loadSentenceEncoder` does it in one call.

import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import initCore, { SentenceModel } from "./jlcm.js";

/** Tokens per sentence at most, special tokens included, unless told (all-MiniLM-L6-v2's `max_seq_length`). */
export const DEFAULT_MAX_TOKENS = 256;

/** An `Error` with the package's stable `code` for tokenizer failures. */
function tokenizerError(message, cause) {
  const e = new Error(message, cause === undefined ? undefined : { cause });
  e.code = "E_TOKENIZER";
  return e;
}

/** `tokenizer.json` (or `tokenizer_config.json`) as an object, from bytes, a string or an object. */
function jsonObject(input, what) {
  if (input === undefined || input === null) return {};
  let value = input;
  try {
    if (input instanceof ArrayBuffer || ArrayBuffer.isView(input)) value = new TextDecoder().decode(input);
    if (typeof value === "string") value = JSON.parse(value);
  } catch (e) {
    throw tokenizerError(`${what} is not JSON: ${e.message}`, e);
  }
  if (typeof value !== "object" || Array.isArray(value)) throw tokenizerError(`${what} must be a JSON object`);
  return value;
}

/**
 * A Hugging Face tokenizer (`tokenizer.json`), set up as sentence-transformers
 * does: special tokens added, truncation to `maxTokens`, no padding.
 */
export class Tokenizer {
  /**
   * @param {Uint8Array|ArrayBuffer|string|object} tokenizerJson  tokenizer.json
   * @param {number} [maxTokens]  tokens per sentence at most, special tokens included (default 256; pass `SentenceModel.maxTokens`)
   * @param {Uint8Array|ArrayBuffer|string|object} [tokenizerConfig]  tokenizer_config.json, if the model has one
   */
  constructor(tokenizerJson, maxTokens = DEFAULT_MAX_TOKENS, tokenizerConfig = undefined) {
    if (!Number.isInteger(maxTokens) || maxTokens < 2) {
      throw tokenizerError(`maxTokens must be an integer of at least 2, got ${maxTokens}`);
    }
    const json = jsonObject(tokenizerJson, "tokenizer.json");
    const config = jsonObject(tokenizerConfig, "tokenizer_config.json");
    try {
      this.inner = new HfTokenizer(json, config);
    } catch (e) {
      throw tokenizerError(`cannot load tokenizer.json: ${e.message}`, e);
    }
    this.maxTokens = maxTokens;
  }

  /** Token ids of one text, special tokens included, truncated as the `tokenizers` crate truncates. */
  encodeOne(text) {
    if (typeof text !== "string") throw tokenizerError(`texts must be strings, got ${typeof text}`);
    let full;
    try {
      full = this.inner.encode(text).ids;
      if (full.length <= this.maxTokens) return full;
      // Longest-first truncation of one sequence: cut the text's own tokens
      // so that, with the special tokens around them, maxTokens remain.
      const body = this.inner.encode(text, { add_special_tokens: false }).ids;
      const added = full.length - body.length;
      if (added >= this.maxTokens) throw tokenizerError(`maxTokens ${this.maxTokens} leaves no room beside ${added} special tokens`);
      const at = specialPrefix(full, body);
      return full.slice(0, at).concat(body.slice(0, this.maxTokens - added), full.slice(at + body.length));
    } catch (e) {
      if (e.code === "E_TOKENIZER") throw e;
      throw tokenizerError(`cannot tokenise: ${e.message}`, e);
    }
  }

  /** Token ids of each text, with `[CLS]` and `[SEP]`: a `TokenBatch` (all ids concatenated, and each text's count). */
  encode(texts) {
    if (!Array.isArray(texts)) throw tokenizerError("encode takes an array of strings");
    const each = texts.map((t) => this.encodeOne(t));
    const lengths = Uint32Array.from(each, (ids) => ids.length);
    const ids = new Uint32Array(lengths.reduce((a, b) => a + b, 0));
    let at = 0;
    for (const s of each) { ids.set(s, at); at += s.length; }
    return { ids, lengths };
  }

  /** Nothing to release (plain JavaScript); kept so `Tokenizer` and `SentenceEncoder` free alike. */
  free() { this.inner = undefined; }

  [Symbol.dispose]() { this.free(); }
}

/** Where `body` starts inside `full` (the special tokens before the text's own). */
function specialPrefix(full, body) {
  const added = full.length - body.length;
  for (let at = 0; at <= added; at++) {
    let same = true;
    for (let i = 0; i < body.length && same; i++) same = full[at + i] === body[i];
    if (same) return at;
  }
  throw tokenizerError("the special tokens are not around the text's tokens: cannot truncate");
}

/**
 * A sentence encoder: the tokenizer plus the core module's `SentenceModel`
 * (dense or packed weights). The core module must be initialised;
 * `loadSentenceEncoder` does that for you.
 */
export class SentenceEncoder {
  /**
   * @param {string} configJson  config.json text
   * @param {Uint8Array|string|object} tokenizerJson  tokenizer.json
   * @param {Uint8Array} weights  dense safetensors or a jlcm packed file
   * @param {Uint8Array|string|object} [tokenizerConfig]  tokenizer_config.json, if the model has one
   */
  constructor(configJson, tokenizerJson, weights, tokenizerConfig = undefined) {
    this.model = new SentenceModel(configJson, weights);
    try {
      this.tokenizer = new Tokenizer(tokenizerJson, this.model.maxTokens, tokenizerConfig);
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
 * One call: initialise the core module if it is not yet (`options.core`:
 * what `init` takes; in Node pass the bytes) and build a `SentenceEncoder`
 * (`options.tokenizerConfig`: tokenizer_config.json, if the model has one).
 */
export async function loadSentenceEncoder(configJson, tokenizerJson, weights, options = {}) {
  await initCore(options.core);
  return new SentenceEncoder(configJson, tokenizerJson, weights, options.tokenizerConfig);
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
