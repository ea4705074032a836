import { Command } from "commander";
import { EdgeFleetError } from "../../shared/errors.js";
import { enroll } from "./enroll.js";

/**
 * `edge-agent enroll --server <url> --token <t> --device-id <id> --password-file <file> [--ca <pem>]`:
 * exchanges a one-time enrollment token for the device's MQTT password (stored 0600). Exit 0 on
 * success, 1 when refused or unreachable, 2 on bad arguments.
 */
export async function runEnrollCli(argv: readonly string[]): Promise<void> {
  const program = new Command("edge-agent enroll")
    .description("exchange a one-time enrollment token for this device's credentials")
    .requiredOption("--server <url>", "fleet server base URL (https://...)")
    .requiredOption("--token <token>", "one-time enrollment token (efe_...)")
    .requiredOption("--device-id <id>", "this device's id")
    .requiredOption("--password-file <file>", "where to store the password (created 0600, never overwritten)")
    .option("--ca <file>", "PEM CA the server's certificate must chain to (pinned)")
    .parse(argv as string[]);
  const o = program.opts<{ server: string; token: string; deviceId: string; passwordFile: string; ca?: string }>();
  try {
    const r = await enroll({
      server: o.server,
      token: o.token,
      deviceId: o.deviceId,
      passwordFile: o.passwordFile,
      ...(o.ca !== undefined ? { caPath: o.ca } : {}),
    });
    process.stdout.write(`enrolled ${r.deviceId}; password stored in ${r.passwordFile}\n`);
  } catch (err) {
    const e = err instanceof EdgeFleetError ? err : null;
    process.stderr.write(`edge-agent enroll: ${e ? `${e.code}: ${e.message}` : String(err)}\n`);
    process.exit(e?.code === "VALIDATION_FAILED" ? 2 : 1);
  }
}
