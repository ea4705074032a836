import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import type { ApiClient } from "./api-client.js";

/**
 * `fleetctl tokens create|list|revoke` (admin) and `fleetctl enrollment create` (operator) and
 * `fleetctl revoke-device`, through the typed API client; the token is printed once and never stored.
 */
export interface TokenCommandDeps {
  client(cmd: Command): ApiClient;
}

function role(value: string): "admin" | "operator" | "viewer" {
  if (value !== "admin" && value !== "operator" && value !== "viewer") {
    throw new InvalidArgumentError(`role must be admin, operator or viewer, got "${value}"`);
  }
  return value;
}

const print = (v: unknown) => console.log(JSON.stringify(v, null, 2));

export function registerTokenCommands(program: Command, deps: TokenCommandDeps): void {
  const tokens = program.command("tokens").description("API bearer tokens with roles (admin only)");
  tokens
    .command("create")
    .description("create a token; prints it once (only its hash is stored)")
    .requiredOption("--role <role>", "admin | operator | viewer", role)
    .requiredOption("--name <name>", "who or what uses the token")
    .action(async (o: { role: string; name: string }, cmd: Command) => {
      print(await deps.client(cmd).createToken({ name: o.name, role: role(o.role) }));
    });
  tokens
    .command("list")
    .description("list tokens (never their values)")
    .action(async (_o: unknown, cmd: Command) => print(await deps.client(cmd).listTokens()));
  tokens
    .command("revoke <id>")
    .description("revoke a token")
    .action(async (id: string, _o: unknown, cmd: Command) => print(await deps.client(cmd).revokeToken(id)));

  program
    .command("audit")
    .description("print the audit log of mutating API calls (admin only)")
    .option("--after <seq>", "entries after this sequence number", "0")
    .action(async (o: { after: string }, cmd: Command) => {
      const after = Number(o.after);
      if (!Number.isInteger(after) || after < 0) throw new InvalidArgumentError(`--after must be a sequence number`);
      print(await deps.client(cmd).listAudit(after));
    });

  const enrollment = program.command("enrollment").description("one-time device enrollment tokens");
  enrollment
    .command("create")
    .description("create a one-time token a device exchanges for its credentials (POST /v1/enroll)")
    .option("--device-id <id>", "bind the token to this device id")
    .option("--profile <profile>", "device profile id")
    .option("--ttl <seconds>", "validity in seconds", "3600")
    .action(async (o: { deviceId?: string; profile?: string; ttl: string }, cmd: Command) => {
      print(
        await deps.client(cmd).createEnrollmentToken({
          ttlSeconds: Number(o.ttl),
          ...(o.deviceId ? { deviceId: o.deviceId } : {}),
          ...(o.profile ? { profile: o.profile } : {}),
        }),
      );
    });

  program
    .command("revoke-device <id>")
    .description("revoke a device: disconnect it, clear its retained messages, refuse it from now on")
    .option("--reason <text>", "recorded with the revocation")
    .action(async (id: string, o: { reason?: string }, cmd: Command) => {
      print(await deps.client(cmd).revokeDevice(id, o.reason ? { reason: o.reason } : {}));
    });
}
