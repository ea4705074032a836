import { z } from "zod";

/**
 * The int8 quantizer's report (issue 23: one schema for it). The fleet server's quantizer
 * (fleet-server/quantize/transform.ts) produces the first part, the int8 validation
 * (fleet-server/registry/int8-variant.ts) adds `validation`; the whole report is signed into the
 * int8 bundle's manifest (`quantization`), decoded with this schema where the server reads
 * manifests back from its store, shown by `GET /v1/models/...` (each variant's `quantization`)
 * and read by fleetctl. The quantizer's own types are inferred from here, so the code that writes
 * the report and the schema that reads it cannot drift apart.
 */

const CountSchema = z.number().int().min(0);
const BytesSchema = z.number().int().min(0);

const OutputPolicySchema = z.object({
  maxAbsError: z.number().min(0).optional(),
  maxRelError: z.number().min(0).optional(),
  /** Leave this output out of the verdict (still measured and reported). */
  ignore: z.boolean().optional(),
});

/**
 * What an int8 variant must achieve against fp32 on the samples (and calibration inputs) to be
 * published. An output passes when its max abs error is within `maxAbsError` OR its error
 * relative to the output's largest fp32 magnitude is within `maxRelError` (element-wise relative
 * error explodes near zero, so it is normalised by the output's range instead).
 */
export const AccuracyPolicySchema = z
  .object({
    maxAbsError: z.number().min(0).default(0.05),
    maxRelError: z.number().min(0).default(0.1),
    /** Fraction of classifier rows whose argmax must match fp32. */
    minTop1Agreement: z.number().min(0).max(1).default(1),
    /** Output names to treat as classifiers; default: float outputs of shape [N, C] with C >= 2. */
    classifierOutputs: z.array(z.string()).optional(),
    /** int8 bundle size / fp32 bundle size must not exceed this (unset: reported only). */
    maxSizeRatio: z.number().positive().optional(),
    /** int8 / fp32 latency on the server must not exceed this (unset: reported only, since devices differ). */
    maxLatencyRatio: z.number().positive().optional(),
    outputs: z.record(z.string(), OutputPolicySchema).optional(),
  })
  .strict();
export type AccuracyPolicy = z.infer<typeof AccuracyPolicySchema>;

/** The quantizer's tuning (fleet-server/quantize/plan.ts `DEFAULT_QUANTIZE_OPTIONS`). */
export const QuantizeOptionsSchema = z.object({
  /** Weights with fewer elements stay fp32: the saving is negligible and small tensors (biases, norms) are precision-sensitive. */
  minElements: CountSchema,
  /** MatMul/Gemm weights with fewer elements use weight-only storage: below this, the per-call
   * DynamicQuantizeLinear of the activation costs more than the integer GEMM saves. */
  dynamicMinElements: CountSchema,
  /** Use the dynamic integer MatMul chain at all (false: weight-only everywhere). */
  dynamicMatMul: z.boolean(),
  /** 7-bit weights for MatMulInteger, so u8*s8 pair sums never saturate int16 on x86 without VNNI (VPMADDUBSW). */
  reduceRange: z.boolean(),
  /** Weight names the operator wants kept in fp32 (e.g. a layer known to be sensitive). */
  keepFp32: z.array(z.string()),
});
export type QuantizeOptions = z.infer<typeof QuantizeOptionsSchema>;

/** Weight-only storage for an opset: per-axis DequantizeLinear from opset 13, Cast*Mul before. */
export const WeightEncodingSchema = z.enum(["dequantize-linear-per-axis", "cast-mul-per-channel"]);
export type WeightEncoding = z.infer<typeof WeightEncodingSchema>;

/** What the quantizer did with one use of a weight by a node. */
export const NodeDecisionSchema = z.object({
  node: z.string(),
  op: z.string(),
  action: z.enum(["dynamic-int8", "weight-only-int8", "skipped", "static-int8"]),
  /** Why a use was skipped (too small, computed, kept on request, a sensitive position). */
  reason: z.string().optional(),
  weight: z.string().optional(),
  /** Subgraph path for nodes inside If/Loop/Scan bodies. */
  scope: z.string().optional(),
});
export type NodeDecision = z.infer<typeof NodeDecisionSchema>;

/** One quantized weight and how it is stored. */
export const WeightRecordSchema = z.object({
  name: z.string(),
  dims: z.array(z.number().int().min(0)),
  /** Storage used: a weight-only encoding and/or `matmul-integer-per-column` (the dynamic MatMul chain). */
  encodings: z.array(z.union([WeightEncodingSchema, z.literal("matmul-integer-per-column")])),
  // Not bounded below: the plan gives a 1-D first MatMul operand `rank - 2`, i.e. -1.
  axis: z.number().int(),
  bytesBefore: BytesSchema,
  bytesAfter: BytesSchema,
});
export type WeightRecord = z.infer<typeof WeightRecordSchema>;

export const QuantizationTotalsSchema = z.object({
  weightsQuantized: CountSchema,
  dynamicNodes: CountSchema,
  weightOnlyNodes: CountSchema,
  bytesBefore: BytesSchema,
  bytesAfter: BytesSchema,
});

/**
 * Static int8 (issue 17, fleet-server/quantize/static/): activations calibrated on the samples
 * and calibration inputs, Conv as QLinearConv and MatMul/Gemm as MatMulInteger on static uint8
 * inputs; nodes the accuracy fallback kept in fp32 are listed.
 */
export const StaticDetailsSchema = z.object({
  calibration: z.object({
    method: z.enum(["minmax", "percentile", "entropy"]),
    percentile: z.number().optional(),
    inputs: CountSchema,
  }),
  /** Opset before/after: opset 9 models are raised to 10 (QuantizeLinear, QLinearConv). */
  opset: z.object({ from: z.number().int(), to: z.number().int() }),
  batchNormsFolded: CountSchema,
  reluFused: CountSchema,
  convNodes: CountSchema,
  matmulNodes: CountSchema,
  /** Node names left in fp32 by the operator (keepFp32Nodes) or by the accuracy fallback. */
  keptFp32: z.array(z.string()),
  /** Every build tried, in order: nodes kept in fp32 and the policy failures it had. */
  attempts: z.array(z.object({ keptFp32: CountSchema, failures: z.array(z.string()) })),
});
export type StaticDetails = z.infer<typeof StaticDetailsSchema>;

/** An int8 build that was made and validated but not chosen for the variant (and why it lost). */
export const Int8AlternativeSchema = z.object({
  method: z.enum(["int8-weights", "int8-static"]),
  passed: z.boolean(),
  sizeRatio: z.number().min(0).optional(),
  latencyRatio: z.number().min(0).optional(),
  reason: z.string(),
});

/** The quantizer's part of the report (fleet-server/quantize/transform.ts `quantizeModel`). */
export const QuantizerReportSchema = z.object({
  /** Weight-only/dynamic int8 (transform.ts) or static int8 with calibration (static/). */
  method: z.enum(["int8-weights", "int8-static"]),
  static: StaticDetailsSchema.optional(),
  alternatives: z.array(Int8AlternativeSchema).optional(),
  opset: z.number().int().min(1),
  /** Weight-only encoding chosen for this opset (no opset is ever raised). */
  weightOnlyEncoding: WeightEncodingSchema,
  options: QuantizeOptionsSchema,
  nodes: z.array(NodeDecisionSchema),
  weights: z.array(WeightRecordSchema),
  totals: QuantizationTotalsSchema,
});
export type QuantizerReport = z.infer<typeof QuantizerReportSchema>;

/** How one output of the int8 model compared with fp32 (fleet-server/quantize/compare.ts). */
export const OutputComparisonSchema = z.object({
  output: z.string(),
  maxAbsError: z.number().min(0),
  /**
   * max |int8 - fp32| / max |fp32| over all samples; null when unbounded (fp32 is all zeros and
   * int8 is not: JSON has no Infinity, and RFC 8785 refuses it in a signed manifest).
   */
  maxRelError: z.number().min(0).nullable(),
  nonFinite: CountSchema,
  top1: z.object({ agree: CountSchema, total: CountSchema }).optional(),
  pass: z.boolean(),
  ignored: z.boolean().optional(),
});
export type OutputComparison = z.infer<typeof OutputComparisonSchema>;

/** How the int8 variant compared with fp32 (fleet-server/registry/int8-variant.ts). */
export const ValidationReportSchema = z.object({
  passed: z.boolean(),
  /** The policy applied, defaults filled in. */
  policy: AccuracyPolicySchema,
  samples: CountSchema,
  calibrationInputs: CountSchema,
  outputs: z.array(OutputComparisonSchema),
  top1Agreement: z.number().min(0).max(1).nullable(),
  /** int8 model file size / fp32 model file size. */
  sizeRatio: z.number().min(0),
  /** Median run time per input on the fleet server's CPU; devices report their own. */
  latency: z.object({ fp32Ms: z.number(), int8Ms: z.number(), ratio: z.number(), runs: CountSchema }),
  failures: z.array(z.string()),
});
export type ValidationReport = z.infer<typeof ValidationReportSchema>;

/** The whole report, as signed into an int8 manifest: the quantizer's part and the validation. */
export const QuantizationReportSchema = QuantizerReportSchema.extend({ validation: ValidationReportSchema });
export type QuantizationReport = z.infer<typeof QuantizationReportSchema>;
