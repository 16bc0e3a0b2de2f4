/** Stable codes of the `code` property of every error jlcm throws. */
export type JlcmErrorCode =
  | "E_FORMAT" | "E_NOT_FOUND" | "E_DTYPE" | "E_NON_FINITE" | "E_TOO_LARGE"
  | "E_OPTIONS" | "E_TENSOR" | "E_CALIBRATION" | "E_SHAPE" | "E_CANCELLED" | "E_ARGUMENT"
  | "E_UNSUPPORTED" | "E_MODEL" | "E_TOKENIZER" | "E_INPUT";

/** An `Error` thrown by jlcm. */
export interface JlcmError extends Error { code: JlcmErrorCode }

/** What jlcm needs to know to read a tensor's bytes (a `TensorInfo` fits). */
export interface TensorSpec { name: string; dtype: string; shape: number[] }

/** One tensor of a safetensors header. `start`/`end` are absolute file offsets. */
export interface TensorInfo extends TensorSpec {
  start: number; end: number; byteLength: number;
  /** Whether the engine compresses it (float matrix, >= 2 rows, >= 8 columns). */
  compressible: boolean;
  rows?: number | null; cols?: number | null;
}

/** A parsed safetensors header. */
export interface SafetensorsHeader {
  dataStart: number; fileLength: number;
  tensors: TensorInfo[];
  metadata: Record<string, string>;
}

/** Compression options (all optional; defaults in brackets). */
export interface CompressOptions {
  /** Bits per index, 1..8 [2]. */ bits?: number;
  /** Codeword dimension 1, 2, 4 or 8 [1]. */ dim?: number;
  /** Row groups 1..256 [16]. */ groups?: number;
  /** ["codebook"] */ mode?: "codebook" | "scale";
  /** Learning sweeps [10]. */ iters?: number;
  /** [0] */ seed?: number;
  /** ["proximal"] */ moves?: "proximal" | "unconstrained";
  /** Relative loss decrease that stops learning [1e-4]. */ tol?: number;
  /** Damping of a calibration H, fraction of its mean diagonal [0.01]. */ damping?: number;
  /** Rotate the inputs first (random signs, block Walsh-Hadamard; stored with the tensor) [false]. */ rotate?: boolean;
}

/** One point of a loss curve. */
export interface LossPoint { sweep: number; kind: "init" | "codebook" | "mapping"; loss: number }

/** Progress events of `compressTensor`. */
export type CompressEvent =
  | { type: "phase"; tensor: string; phase: "grouping" | "init" | "learning" | "packing" }
  | { type: "loss"; tensor: string; point: LossPoint };

/** Callbacks and extra inputs of `compressTensor`. */
export interface CompressContext {
  /** Called at each phase and learning step; return `false` to cancel. */
  onProgress?: (event: CompressEvent) => boolean | void;
  /** Checked at every event; when aborted the call throws `E_CANCELLED`. */
  signal?: AbortSignal;
  /** Calibration `H` (`cols x cols`, row-major). */
  calibration?: Float32Array;
}

/** `CompressedTensor.report()`. */
export interface CompressReport {
  name: string; nOut: number; nIn: number; bpw: number;
  losses: LossPoint[];
  relWeightError: number; relOutputError: number;
  groupSizes: number[]; rowLoss: number[];
  bits: number; dim: number; groups: number; mode: "codebook" | "scale";
  shape: number[]; dtype: string;
  /** Each codebook's `2^bits * dim` coordinates. */
  codebooks: number[][];
  scales: number[];
  groupOfRow: number[];
  packedBytes: number;
}

/** Options of `analyseTensor`. */
export interface AnalyseOptions { groups?: number; bins?: number; seed?: number }

/** Counts in equal-width bins over `[min, max]`. */
export interface Histogram { min: number; max: number; counts: number[] }

/** `analyseTensor` result. */
export interface TensorAnalysis {
  name: string; rows: number; cols: number; mean: number; std: number;
  histogram: Histogram;
  groups: { count: number; groupOfRow: number[]; sizes: number[]; histograms: Histogram[] } | null;
  rowStats: { mean: number[]; rms: number[]; min: number[]; max: number[] };
}

/** One tensor of `inspectPackedFile`. */
export interface PackedTensorInfo {
  name: string; packed: boolean; shape: number[]; dtype: string;
  bits: number | null; dim: number | null; groups: number | null; mode: "codebook" | "scale" | null;
  bpw: number | null; bytes: number; originalBytes: number;
}

/** `inspectPackedFile` result. */
export interface PackedFileInfo {
  fileBytes: number; originalBytes: number; ratio: number; bpw: number; packedWeights: number;
  tensors: PackedTensorInfo[];
  metadata: Record<string, string>;
}

/** Token ids of a batch of sentences (`Tokenizer.encode` of `jlcm/text`): all ids concatenated, and each sentence's count. */
export interface TokenBatch { ids: Uint32Array; lengths: Uint32Array }

/** Options of `computeCalibration`. */
export interface CalibrationOptions {
  /** Sentences per forward pass [32, as `jlcm calibrate --batch-size`]; the same batches give the same bytes. */
  batchSize?: number;
}

/** Progress of `computeCalibration`: sentences done of total. */
export interface CalibrationProgress { done: number; total: number }

/** Callbacks of `computeCalibration`. */
export interface CalibrationContext {
  /** Called after each batch; return `false` to cancel (`E_CANCELLED`). */
  onProgress?: (progress: CalibrationProgress) => boolean | void;
  /** Checked after each batch; when aborted the call throws `E_CANCELLED`. */
  signal?: AbortSignal;
}
