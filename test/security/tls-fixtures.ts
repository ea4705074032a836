import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { request } from "node:https";
import { join } from "node:path";
import { promisify } from "node:util";

/**
 * TLS material made with the `openssl` command (issue 7: tests generate their own CA and certs),
 * and a minimal HTTPS JSON client on node:https with an explicit CA (fetch has no per-request CA).
 */

const run = promisify(execFile);

export interface TestCa {
  caPath: string;
  keyPath: string;
}

export interface TestPki {
  ca: TestCa;
  /** A second, unrelated CA: what an attacker's (or a misconfigured) pin looks like. */
  rogue: TestCa;
  /** Server certificate issued by `ca`, SAN IP:127.0.0.1 and DNS:localhost. */
  serverCertPath: string;
  serverKeyPath: string;
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

async function makeCa(dir: string, name: string): Promise<TestCa> {
  const caPath = join(dir, `${name}.pem`);
  const keyPath = join(dir, `${name}.key`);
  await run("openssl", [
    "req",
    "-x509",
    ...EC,
    "-keyout",
    keyPath,
    "-out",
    caPath,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
  ]);
  return { caPath, keyPath };
}

export async function makeTestPki(dir: string): Promise<TestPki> {
  const ca = await makeCa(dir, "edgefleet-test-ca");
  const rogue = await makeCa(dir, "rogue-ca");
  const serverKeyPath = join(dir, "server.key");
  const csr = join(dir, "server.csr");
  const serverCertPath = join(dir, "server.pem");
  const ext = join(dir, "server.ext");
  await writeFile(
    ext,
    [
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "basicConstraints=CA:FALSE",
      "keyUsage=digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth",
      "",
    ].join("\n"),
  );
  await run("openssl", ["req", ...EC, "-keyout", serverKeyPath, "-out", csr, "-subj", "/CN=localhost"]);
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca.caPath,
    "-CAkey",
    ca.keyPath,
    "-CAcreateserial",
    "-out",
    serverCertPath,
    "-days",
    "2",
    "-extfile",
    ext,
  ]);
  return { ca, rogue, serverCertPath, serverKeyPath };
}

export interface HttpsResult {
  status: number;
  body: unknown;
}

/** One HTTPS request trusting only `ca`; a JSON body, or raw bytes as application/octet-stream. */
export function httpsRequest(
  url: string,
  opts: { ca: Buffer; method?: string; token?: string; json?: unknown; bytes?: Buffer },
): Promise<HttpsResult> {
  const payload = opts.bytes ?? (opts.json !== undefined ? Buffer.from(JSON.stringify(opts.json)) : undefined);
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (payload) {
    headers["content-type"] = opts.bytes ? "application/octet-stream" : "application/json";
    headers["content-length"] = String(payload.length);
  }
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: opts.method ?? "GET", headers, ca: opts.ca, rejectUnauthorized: true },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (c: Buffer) => parts.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const text = Buffer.concat(parts).toString("utf8");
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // not JSON: keep the text
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}
