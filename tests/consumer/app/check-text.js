// The check of the tokenizer (`jlcm/text`) every consumer runs: a tiny
// hand-made WordPiece tokenizer.json (the format of all-MiniLM-L6-v2's).

const VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "##s", ",", "jl", "##cm"];

/** A BERT-style tokenizer.json over VOCAB. */
export function tinyTokenizerJson() {
  const special = (id) => ({ id, special: true, content: VOCAB[id], single_word: false, lstrip: false, rstrip: false, normalized: false });
  const json = {
    version: "1.0", truncation: null, padding: null,
    added_tokens: [0, 1, 2, 3].map(special),
    normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "[SEP]", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "[SEP]", type_id: 0 } },
        { Sequence: { id: "B", type_id: 1 } }, { SpecialToken: { id: "[SEP]", type_id: 1 } }],
      special_tokens: { "[CLS]": { id: "[CLS]", ids: [2], tokens: ["[CLS]"] }, "[SEP]": { id: "[SEP]", ids: [3], tokens: ["[SEP]"] } },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100,
      vocab: Object.fromEntries(VOCAB.map((t, i) => [t, i])) },
  };
  return new TextEncoder().encode(JSON.stringify(json));
}

/** Tokenise with jlcm/text; throws on a wrong id or error code. */
export function tokenizeCheck(text) {
  const tokenizer = new text.Tokenizer(tinyTokenizerJson(), 5);
  const batch = tokenizer.encode(["Hello, worlds", "JLCM unknownword hello"]);
  tokenizer.free();
  const got = JSON.stringify({ ids: [...batch.ids], lengths: [...batch.lengths] });
  // Truncated to 5 tokens, special tokens included.
  const want = JSON.stringify({ ids: [2, 4, 7, 5, 3, 2, 8, 9, 1, 3], lengths: [5, 5] });
  if (got !== want) throw new Error(`jlcm/text tokenizer: ${got}, expected ${want}`);
  let bad = "none";
  try { new text.Tokenizer(new TextEncoder().encode("{}")); } catch (e) { bad = e.code; }
  if (bad !== "E_TOKENIZER") throw new Error(`a bad tokenizer.json gave ${bad}, expected E_TOKENIZER`);
  return { tokens: batch.ids.length, lengths: [...batch.lengths] };
}
