import { readFile } from "node:fs/promises";
import { Command, InvalidArgumentError } from "commander";
import { ApiClient, ApiError, type RolloutStatus } from "./api-client.js";
import { bar, createProgressLine, formatBytes } from "./progress.js";

/**
 * fleetctl: the operator's command line for the fleet server's HTTP API.
 * Server and token come from flags or EDGEFLEET_SERVER / EDGEFLEET_TOKEN.
 */
function client(cmd: Command): ApiClient {
  const o = cmd.optsWithGlobals<{ server: string; token?: string }>();
  const token = o.token ?? process.env.EDGEFLEET_TOKEN;
  if (!token) throw new ApiError(0, "UNAUTHORIZED", "no API token: pass --token or set EDGEFLEET_TOKEN");
  return new ApiClient({ baseUrl: o.server, token });
}

function isJson(cmd: Command): boolean {
  return cmd.optsWithGlobals<{ json?: boolean }>().json === true;
}

function parseTag(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError(`tag must be key=value, got "${value}"`);
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, ...value.split(",").filter((s) => s.length > 0)];
}

function printRollout(s: RolloutStatus): void {
  const c = s.counts;
  console.log(`rollout ${s.id}  ${s.model}@${s.version} (${s.variant})  ${s.status}`);
  console.log(
    `  devices: ${c.total}  committed: ${c.committed}  in progress: ${c.inProgress}  pending: ${c.pending}  failed: ${c.failed}`,
  );
  for (const d of s.devices) {
    const prog = d.progress ? `  ${formatBytes(d.progress.bytes)}/${formatBytes(d.progress.total)}` : "";
    const err = d.error ? `  ${d.error.code}: ${d.error.message}` : "";
    console.log(`  ${d.deviceId.padEnd(24)} ${d.state.padEnd(14)}${prog}${err}`);
  }
}

function rolloutLine(s: RolloutStatus): string {
  const c = s.counts;
  const frac = c.total === 0 ? 0 : (c.committed + c.failed) / c.total;
  return `rollout ${s.id} ${bar(frac)} committed ${c.committed}/${c.total}, failed ${c.failed}, in progress ${c.inProgress}`;
}

export function buildProgram(): Command {
  const program = new Command("fleetctl")
    .description("Operate an EdgeFleet fleet server")
    .option("--server <url>", "fleet server URL", process.env.EDGEFLEET_SERVER ?? "http://127.0.0.1:8080")
    .option("--token <token>", "API bearer token (or EDGEFLEET_TOKEN)")
    .option("--json", "machine-readable JSON output");

  const models = program.command("models").description("model registry");
  models
    .command("push <file>")
    .description("upload an ONNX model, record its samples' outputs, build and sign its bundles")
    .requiredOption("--name <name>", "model name")
    .requiredOption("--version <semver>", "model version")
    .requiredOption("--samples <file>", "JSON file: array of { inputs: { name: { datatype, shape, data } } }")
    .option("--lineage <file>", "JSON file with lineage metadata")
    .option("--model-card <file>", "Markdown model card")
    .action(async (file: string, o: Record<string, string>, cmd: Command) => {
      const api = client(cmd);
      const samples = JSON.parse(await readFile(o.samples!, "utf8")) as unknown[];
      const lineage = o.lineage
        ? (JSON.parse(await readFile(o.lineage, "utf8")) as Record<string, unknown>)
        : undefined;
      const modelCard = o.modelCard ? await readFile(o.modelCard, "utf8") : undefined;
      const line = createProgressLine();
      const up = await api.upload(file, (p) =>
        line.update(
          `uploading ${bar(p.bytes / p.total)} ${formatBytes(p.bytes)}/${formatBytes(p.total)}`,
          p.bytes / p.total,
        ),
      );
      line.done(`uploaded ${formatBytes(up.size)} sha256 ${up.sha256.slice(0, 12)}…`);
      line.update("validating model, recording sample outputs, building signed bundles…");
      const created = await api.createModel({
        name: o.name!,
        version: o.version!,
        upload: up.sha256,
        samples,
        lineage,
        modelCard,
      });
      line.done(`model ${o.name}@${o.version} registered`);
      console.log(JSON.stringify(created, null, 2));
    });
  models
    .command("list")
    .description("list models and versions")
    .action(async (_o: unknown, cmd: Command) => {
      console.log(JSON.stringify(await client(cmd).listModels(), null, 2));
    });

  const rollouts = program.command("rollouts").description("rollouts of model versions to devices");
  rollouts
    .command("create")
    .description("roll a model version out to devices")
    .requiredOption("--model <name>")
    .requiredOption("--version <semver>")
    .option("--variant <variant>", "bundle variant", "fp32")
    .option("--devices <ids>", "comma-separated device ids", collect)
    .option("--tag <key=value>", "target devices with this tag (repeatable)", parseTag)
    .option("--probation-seconds <n>", "probation window on each device", Number)
    .option("--wait", "follow the rollout until it ends")
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const api = client(cmd);
      const healthPolicy =
        o.probationSeconds === undefined ? undefined : { probationSeconds: o.probationSeconds as number };
      const created = await api.createRollout({
        model: o.model as string,
        version: o.version as string,
        variant: o.variant as string,
        target: { deviceIds: o.devices as string[] | undefined, tags: o.tag as Record<string, string> | undefined },
        healthPolicy,
      });
      if (!o.wait) {
        if (isJson(cmd)) console.log(JSON.stringify(created, null, 2));
        else printRollout(created);
        return;
      }
      const line = createProgressLine();
      const final = await api.waitForRollout(created.id, {
        onUpdate: (s) =>
          line.update(rolloutLine(s), s.counts.total ? (s.counts.committed + s.counts.failed) / s.counts.total : 0),
      });
      line.done(rolloutLine(final));
      if (isJson(cmd)) console.log(JSON.stringify(final, null, 2));
      else printRollout(final);
      if (final.status !== "completed") process.exitCode = 1;
    });
  rollouts
    .command("status <id>")
    .description("show a rollout and its devices")
    .option("--watch", "follow until the rollout ends")
    .action(async (id: string, o: { watch?: boolean }, cmd: Command) => {
      const api = client(cmd);
      const s = o.watch
        ? await api.waitForRollout(id, { onUpdate: (x) => createProgressLine().update(rolloutLine(x)) })
        : await api.getRollout(id);
      if (isJson(cmd)) console.log(JSON.stringify(s, null, 2));
      else printRollout(s);
    });

  const devices = program.command("devices").description("enrolled devices");
  devices
    .command("list")
    .description("list devices with presence and models")
    .action(async (_o: unknown, cmd: Command) => {
      const { devices: list } = await client(cmd).listDevices();
      if (isJson(cmd)) {
        console.log(JSON.stringify(list, null, 2));
        return;
      }
      for (const d of list) {
        const models = ((d.models ?? []) as { model: string; state: string; committedVersion: string | null }[])
          .map((m) => `${m.model}@${m.committedVersion ?? "-"} ${m.state}`)
          .join(", ");
        console.log(
          `${String(d.id).padEnd(24)} ${String(d.presence ?? "unknown").padEnd(8)} ${String(d.profile ?? "").padEnd(16)} ${models}`,
        );
      }
    });
  devices
    .command("add <id>")
    .description("enroll a device; prints its MQTT password once")
    .option("--tag <key=value>", "tag (repeatable)", parseTag)
    .option("--profile <profile>", "device profile id")
    .action(async (id: string, o: { tag?: Record<string, string>; profile?: string }, cmd: Command) => {
      const res = await client(cmd).enrollDevice({ id, tags: o.tag, profile: o.profile });
      console.log(JSON.stringify(res, null, 2));
    });
  return program;
}

export async function runFleetctl(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof ApiError) {
      console.error(`error ${err.code}: ${err.message}`);
      return err.status === 0 ? 2 : 1;
    }
    console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

process.exitCode = await runFleetctl(process.argv);
