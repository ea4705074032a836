import { z } from "zod";
import { Sha256Schema } from "./common.js";

export const MIN_CHUNK = 64 * 1024;
export const MAX_CHUNK = 256 * 1024;

/** `fleet/v1/d/{id}/chunks/req` (architecture.md §4 pull protocol). */
export const ChunkRequestSchema = z.object({
  bundle: Sha256Schema,
  offset: z.number().int().min(0),
  length: z.number().int().min(1).max(MAX_CHUNK),
  reqId: z.string().min(1).max(64),
});
export type ChunkRequest = z.infer<typeof ChunkRequestSchema>;

/** Header of a `chunks/res` binary frame. `size` is the bundle's total size. */
export const ChunkHeaderSchema = z.object({
  reqId: z.string().min(1).max(64),
  bundle: Sha256Schema,
  offset: z.number().int().min(0),
  length: z.number().int().min(0).max(MAX_CHUNK),
  size: z.number().int().min(0),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type ChunkHeader = z.infer<typeof ChunkHeaderSchema>;
