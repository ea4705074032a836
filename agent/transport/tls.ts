import { readFile } from "node:fs/promises";
import { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";

/**
 * TLS with CA pinning for the agent's MQTT link (issue 7): `ca` replaces Node's default trust
 * store, so only certificates issued by the operator's CA are accepted — a public CA, or any other
 * private one, is not. Optional client certificate for brokers that require mutual TLS.
 */
export const AgentTlsSchema = z
  .object({
    /** PEM bundle of the CA(s) the broker's certificate must chain to (the pin). */
    caPath: z.string().min(1),
    /** Client certificate and key (PEM), both or neither. */
    certPath: z.string().min(1).optional(),
    keyPath: z.string().min(1).optional(),
  })
  .strict()
  .refine((t) => (t.certPath === undefined) === (t.keyPath === undefined), "certPath and keyPath go together");
export type AgentTls = z.infer<typeof AgentTlsSchema>;

/** What mqtt.js (and node:tls / node:https) take. */
export interface TlsClientOptions {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized: true;
}

/** A pinned CA only makes sense on an encrypted URL; a plain one would silently ignore it. Pure. */
export function checkTlsUrl(url: string, tls: AgentTls | undefined): void {
  if (tls && !/^(mqtts|wss):\/\//.test(url)) {
    throw new EdgeFleetError("VALIDATION_FAILED", `tls.caPath is set but mqttUrl ${url} is not mqtts:// or wss://`);
  }
}

async function readPem(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new EdgeFleetError("VALIDATION_FAILED", `cannot read TLS ${what} ${path}: ${(err as Error).message}`);
  }
}

export async function loadTlsOptions(tls: AgentTls): Promise<TlsClientOptions> {
  const ca = await readPem(tls.caPath, "CA");
  if (!ca.toString("latin1").includes("-----BEGIN CERTIFICATE-----")) {
    throw new EdgeFleetError("VALIDATION_FAILED", `TLS CA ${tls.caPath} holds no PEM certificate`);
  }
  return {
    ca,
    ...(tls.certPath ? { cert: await readPem(tls.certPath, "certificate") } : {}),
    ...(tls.keyPath ? { key: await readPem(tls.keyPath, "key") } : {}),
    rejectUnauthorized: true,
  };
}
