import { mkdir, open, readFile, rm } from "node:fs/promises";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { dirname } from "node:path";
import { z } from "zod";
import { EdgeFleetError, ERROR_CODES, type ErrorCode } from "../../shared/errors.js";
import { DeviceIdSchema } from "../../shared/schemas/common.js";

/**
 * The agent's side of enrollment (issue 7): spends a one-time enrollment token at `POST /v1/enroll`
 * and stores the device password it gets back in a new 0600 file (never overwriting one). With
 * `caPath`, HTTPS trusts only that CA (the same pin as the MQTT link).
 */

export interface EnrollOptions {
  /** Fleet server base URL, http:// or https://. */
  server: string;
  token: string;
  deviceId: string;
  caPath?: string;
  passwordFile: string;
  timeoutMs?: number;
}

const EnrollResponseSchema = z.object({ id: DeviceIdSchema, password: z.string().min(8).max(1024) });
const MAX_RESPONSE_BYTES = 64 * 1024;

interface JsonResponse {
  status: number;
  body: unknown;
}

/** A JSON POST over node:http(s); `ca` pins the server's CA. */
function postJson(url: URL, body: unknown, ca: Buffer | undefined, timeoutMs: number): Promise<JsonResponse> {
  const payload = Buffer.from(JSON.stringify(body));
  const headers = { "content-type": "application/json", "content-length": String(payload.length) };
  return new Promise((resolve, reject) => {
    const onResponse = (res: IncomingMessage) => {
      const parts: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_RESPONSE_BYTES) return void res.destroy(new Error("response too large"));
        parts.push(c);
      });
      res.on("error", reject);
      res.on("end", () => {
        const text = Buffer.concat(parts).toString("utf8");
        let json: unknown = null;
        try {
          json = text.length > 0 ? JSON.parse(text) : null;
        } catch {
          json = null;
        }
        resolve({ status: res.statusCode ?? 0, body: json });
      });
    };
    const req =
      url.protocol === "https:"
        ? httpsRequest(url, { method: "POST", headers, ...(ca ? { ca, rejectUnauthorized: true } : {}) }, onResponse)
        : httpRequest(url, { method: "POST", headers }, onResponse);
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(payload);
  });
}

/** The EdgeFleetError for a refused enrollment, keeping the server's code when it is one of ours. Pure. */
export function enrollmentError(status: number, body: unknown): EdgeFleetError {
  const err = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const code =
    typeof err?.code === "string" && (ERROR_CODES as readonly string[]).includes(err.code)
      ? (err.code as ErrorCode)
      : "UNAUTHORIZED";
  const message = typeof err?.message === "string" ? err.message : `HTTP ${status}`;
  return new EdgeFleetError(code, `enrollment refused (${status}): ${message}`);
}

export async function enroll(o: EnrollOptions): Promise<{ deviceId: string; passwordFile: string }> {
  const deviceId = DeviceIdSchema.parse(o.deviceId);
  let url: URL;
  try {
    url = new URL("/v1/enroll", o.server);
  } catch {
    throw new EdgeFleetError("VALIDATION_FAILED", `--server ${o.server} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new EdgeFleetError("VALIDATION_FAILED", "--server must be an http:// or https:// URL");
  }
  if (o.caPath && url.protocol !== "https:") {
    throw new EdgeFleetError("VALIDATION_FAILED", "--ca given but --server is not https://");
  }
  const ca = o.caPath ? await readFile(o.caPath) : undefined;
  // Refuse before spending the token: an existing password file is never overwritten.
  const fh = await mkdir(dirname(o.passwordFile), { recursive: true, mode: 0o700 })
    .then(() => open(o.passwordFile, "wx", 0o600))
    .catch((err: NodeJS.ErrnoException) => {
      throw new EdgeFleetError(
        err.code === "EEXIST" ? "CONFLICT" : "VALIDATION_FAILED",
        `cannot create ${o.passwordFile}: ${err.code === "EEXIST" ? "it already exists" : err.message}`,
      );
    });
  let written = false;
  try {
    let res: JsonResponse;
    try {
      res = await postJson(url, { token: o.token, id: deviceId }, ca, o.timeoutMs ?? 15_000);
    } catch (err) {
      throw new EdgeFleetError("NOT_CONNECTED", `cannot reach ${url.origin}: ${(err as Error).message}`);
    }
    if (res.status !== 201 && res.status !== 200) throw enrollmentError(res.status, res.body);
    const creds = EnrollResponseSchema.safeParse(res.body);
    if (!creds.success || creds.data.id !== deviceId) {
      throw new EdgeFleetError("BAD_REQUEST", "the server's enrollment answer is not {id, password} for this device");
    }
    await fh.writeFile(`${creds.data.password}\n`);
    await fh.sync();
    written = true;
    return { deviceId, passwordFile: o.passwordFile };
  } finally {
    await fh.close();
    if (!written) await rm(o.passwordFile, { force: true });
  }
}
