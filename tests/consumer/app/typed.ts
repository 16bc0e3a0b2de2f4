// Type-checked use of the package's .d.ts (tsc --noEmit --strict): the
// README's example plus the report, progress events and error codes.
import init, {
  compressTensor, parseHeader, inspectPackedFile, PackedFileBuilder,
  type CompressEvent, type CompressReport, type JlcmError, type TensorInfo,
} from "jlcm";

export async function compressFirst(bytes: Uint8Array): Promise<number> {
  await init();
  const t: TensorInfo | undefined = parseHeader(bytes).tensors.find((t) => t.compressible);
  if (!t) return 0;
  const seen: CompressEvent[] = [];
  const abort = new AbortController();
  try {
    const packed = compressTensor(t, bytes.subarray(t.start, t.end), { bits: 2, mode: "scale" }, {
      onProgress: (e) => { seen.push(e); if (e.type === "loss" && e.point.loss < 0) return false; },
      signal: abort.signal,
    });
    const report: CompressReport = packed.report();
    const builder = new PackedFileBuilder();
    builder.addCompressed(packed);
    return inspectPackedFile(builder.toBytes()).bpw + report.codebooks.length;
  } catch (e) {
    if ((e as JlcmError).code === "E_CANCELLED") return -1;
    throw e;
  }
}

// The text entry: sentence embeddings and calibration from text.
import { loadSentenceEncoder, Tokenizer, type TokenBatch } from "jlcm/text";
import { SentenceModel, computeCalibration, type CalibrationProgress } from "jlcm";

export async function embedAndCalibrate(config: string, tokenizer: Uint8Array, weights: Uint8Array): Promise<number> {
  const enc = await loadSentenceEncoder(config, tokenizer, weights);
  const emb: Float32Array = enc.embed(["a sentence"]);
  const seen: CalibrationProgress[] = [];
  const h: Uint8Array = enc.computeCalibration(["a sentence"], { batchSize: 8 }, { onProgress: (p) => { seen.push(p); } });
  enc.free();
  const model = new SentenceModel(config, weights);
  const tok = new Tokenizer(tokenizer, model.maxTokens);
  const batch: TokenBatch = tok.encode(["another"]);
  const h2: Uint8Array = computeCalibration(config, weights, batch);
  return emb.length + h.length + h2.length + model.embedTokens(batch).length;
}
