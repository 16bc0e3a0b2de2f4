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
