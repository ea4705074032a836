import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
export const FLEETCTL = fileURLToPath(new URL("../../bin/fleetctl.js", import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * fleetctl as a real process against `server` with `token` (EDGEFLEET_TOKEN); a non-zero exit is
 * returned with its output, not thrown, so tests can check exit codes (scripts/fleetctl/exit-codes.ts).
 */
export function runFleetctl(server: { httpUrl: string }, token: string, args: string[]): Promise<CliResult> {
  return run(process.execPath, [FLEETCTL, "--server", server.httpUrl, ...args], {
    env: { ...process.env, EDGEFLEET_TOKEN: token },
  }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: CliResult) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}
