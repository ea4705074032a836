import type { MessagePort } from "node:worker_threads";

/** Messages between the store bridge (`pg-bridge.ts`, main thread) and its worker (`pg-worker.ts`). */
export interface BridgeWorkerData {
  url: string;
  timeoutMs: number;
  /** Int32 counter: the worker adds one after each reply it posts. */
  signal: SharedArrayBuffer;
  port: MessagePort;
}

export type BridgeRequest =
  | { id: number; op: "query"; text: string; values: unknown[]; name?: string }
  | { id: number; op: "exec"; text: string }
  | { id: number; op: "close" };

export interface BridgeError {
  message: string;
  /** PostgreSQL's SQLSTATE, or a Node error code (ECONNREFUSED, …). */
  code?: string;
  detail?: string;
  constraint?: string;
}

export type BridgeReply =
  | { id: number; rows: Record<string, unknown>[]; changes: number; error?: undefined }
  | { id: number; error: BridgeError };
