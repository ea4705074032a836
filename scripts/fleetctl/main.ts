import { readFile } from "node:fs/promises";
import { Command, InvalidArgumentError, Option } from "commander";
import { z } from "zod";
import { AccuracyPolicySchema, CreateModelRequestSchema, type VersionView } from "../../shared/http/models.js";
import { LineageInputSchema } from "../../shared/schemas/manifest.js";
import { SampleInputSchema } from "../../shared/schemas/tensor.js";
import { ApiClient, ApiError } from "./api-client.js";
import { waitForBuild } from "./build-wait.js";
import { registerCostCommand } from "./cost-command.js";
import { formatDeviceLine } from "./device-format.js";
import { importDevices } from "./device-import.js";
import { exitForError } from "./exit-codes.js";
import { registerFeedbackCommand } from "./feedback-command.js";
import { registerGovernanceCommands } from "./governance-commands.js";
import { registerKeysCommands } from "./keys-commands.js";
import { registerModelViewCommands } from "./model-commands.js";
import { bar, createProgressLine, formatBytes } from "./progress.js";
import { registerReleaseCommands } from "./release-commands.js";
import { registerRolloutCommands } from "./rollout-commands.js";
import { writeSecretFile } from "./secret-file.js";
import { registerTokenCommands } from "./token-commands.js";
import { registerValidateCommand } from "./validate-command.js";

/**
 * fleetctl: the operator's command line for the fleet server's HTTP API.
 * Server and token come from flags or EDGEFLEET_SERVER / EDGEFLEET_TOKEN.
 */
function client(cmd: Command): ApiClient {
  // Commander fills both from EDGEFLEET_SERVER / EDGEFLEET_TOKEN when the flag is absent.
  const o = cmd.optsWithGlobals<{ server: string; token?: string }>();
  if (!o.token) throw new ApiError(0, "UNAUTHORIZED", "no API token: pass --token or set EDGEFLEET_TOKEN");
  return new ApiClient({ baseUrl: o.server, token: o.token });
}

function isJson(cmd: Command): boolean {
  return cmd.optsWithGlobals<{ json?: boolean }>().json === true;
}

function parseTag(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError(`tag must be key=value, got "${value}"`);
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

function parseQuantize(value: string): "int8" | "none" {
  if (value !== "int8" && value !== "none")
    throw new InvalidArgumentError(`--quantize must be int8 or none, got "${value}"`);
  return value;
}

/** Reads a JSON file given to a flag and parses it with the contract's schema (status 0: found locally). */
async function readJsonFile<S extends z.ZodType>(path: string, schema: S, flag: string): Promise<z.output<S>> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, "utf8"));
  } catch (err) {
    throw new ApiError(0, "VALIDATION_FAILED", `${flag} ${path}: not JSON (${(err as Error).message})`);
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    const issues = r.error.issues.slice(0, 5).map((i) => `${[flag, ...i.path].join(".")}: ${i.message}`);
    throw new ApiError(0, "VALIDATION_FAILED", `${path}: ${issues.join("; ")}`);
  }
  return r.data;
}

/** The end-of-push report: one block per variant, the int8 validation in plain words. */
function printVariants(v: VersionView): void {
  console.log(`${v.name}@${v.version}`);
  for (const x of v.variants) {
    const where = x.bundle ? `bundle ${x.bundle.sha256.slice(0, 12)}… ${formatBytes(x.bundle.size)}` : "no bundle";
    const status = x.published ? "published" : "NOT published";
    console.log(
      `  ${x.variant.padEnd(5)} ${status.padEnd(14)} ${where}${x.releaseCounter ? `  release ${x.releaseCounter}` : ""}`,
    );
    if (x.reason) console.log(`        ${x.reason}`);
    const q = x.quantization;
    if (q) {
      const skipped = q.nodes.filter((n) => n.action === "skipped").length;
      const st = q.static;
      console.log(
        st
          ? `        static int8 (${st.calibration.method}): ${st.convNodes} QLinearConv, ${st.matmulNodes} integer MatMul, ${skipped} kept fp32 (${st.keptFp32.length} by the accuracy fallback or on request)`
          : `        nodes: ${q.totals.dynamicNodes} dynamic int8 MatMul, ${q.totals.weightOnlyNodes} int8 weight-only, ${skipped} kept fp32`,
      );
      for (const a of q.alternatives ?? []) console.log(`        not chosen: ${a.method}: ${a.reason}`);
    }
    const val = x.validation;
    if (!val) continue;
    const top1 = val.top1Agreement === null ? "" : `, top-1 agreement ${(val.top1Agreement * 100).toFixed(1)}%`;
    console.log(
      `        size ${(val.sizeRatio * 100).toFixed(1)}% of fp32, latency x${val.latency.ratio} on the server (${val.latency.int8Ms} vs ${val.latency.fp32Ms} ms)${top1}`,
    );
    for (const o of val.outputs) {
      const mark = o.ignored ? "ignored" : o.pass ? "ok" : "FAIL";
      console.log(
        `        output ${o.output}: max abs err ${o.maxAbsError.toPrecision(3)}, rel ${o.maxRelError === null ? "unbounded" : o.maxRelError.toPrecision(3)}  ${mark}`,
      );
    }
    for (const f of val.failures) console.log(`        failed: ${f}`);
  }
}

const DEFAULT_SERVER = "http://127.0.0.1:8080";
/** Shown under every `--help` (issue 23: a newcomer did not find the variables). */
const ENV_HELP = `
Environment:
  EDGEFLEET_SERVER  fleet server URL when --server is not given (default ${DEFAULT_SERVER})
  EDGEFLEET_TOKEN   API bearer token when --token is not given (create one: fleetctl tokens create)`;

export function buildProgram(): Command {
  const program = new Command("fleetctl")
    .description("Operate an EdgeFleet fleet server")
    .addOption(new Option("--server <url>", "fleet server URL").env("EDGEFLEET_SERVER").default(DEFAULT_SERVER))
    .addOption(new Option("--token <token>", "API bearer token").env("EDGEFLEET_TOKEN"))
    .option("--json", "machine-readable JSON output")
    .addHelpText("after", ENV_HELP);

  const models = program.command("models").description("model registry");
  registerValidateCommand(models, readJsonFile, isJson);
  models
    .command("push <file>")
    .description("upload an ONNX model, record its samples' outputs, build and sign its bundles")
    .requiredOption("--name <name>", "model name")
    .requiredOption("--version <semver>", "model version")
    .option(
      "--samples <file>",
      "JSON file: array of { inputs: { name: { datatype, shape, data } } }; omitted: synthetic inputs from the model's metadata",
    )
    .option(
      "--allow-synthetic-int8",
      "publish int8 even if validated on synthetic inputs only (no --samples/--calibration)",
    )
    .option("--lineage <file>", "JSON file with lineage metadata")
    .option("--model-card <file>", "Markdown model card")
    .option("--quantize <mode>", "also build a validated int8 variant: int8 | none", parseQuantize, "int8")
    .option(
      "--accuracy-policy <file>",
      "JSON file overriding the int8 accuracy policy (docs/operations.md, example docs/examples/accuracy-policy.json)",
    )
    .option("--calibration <file>", "JSON file: extra inputs to validate int8 against fp32 (same format as samples)")
    .option(
      "--sequence <file>",
      'JSON file: the sequence spec of a stateful model (state, constants, windows; docs/protocol.md "Sequences")',
    )
    .option(
      "--arch <arch>",
      "only devices of this CPU architecture may run it (repeatable: x64, arm64)",
      (v: string, acc: string[]) => [...acc, v],
      [],
    )
    .action(async (file: string, o: Record<string, string>, cmd: Command) => {
      const api = client(cmd);
      // The same schemas the server parses the request with (shared/http/models.ts), so a bad file
      // is refused here, before the upload, with the field that is wrong.
      const fields = CreateModelRequestSchema.shape;
      const samples = o.samples ? await readJsonFile(o.samples, fields.samples, "--samples") : undefined;
      if (!samples) {
        // Said before the upload, so the operator knows what the smoke test will run on (issue 23).
        console.error(
          "no --samples: the server generates synthetic smoke-test inputs from the model's input metadata " +
            "(labelled in the bundle; they prove devices run it, not that it is accurate). int8 is published " +
            'only with real --samples/--calibration or --allow-synthetic-int8. Recording real samples: docs/operations.md, "Samples".',
        );
      }
      const lineage = o.lineage ? await readJsonFile(o.lineage, LineageInputSchema, "--lineage") : undefined;
      const modelCard = o.modelCard ? await readFile(o.modelCard, "utf8") : undefined;
      const accuracyPolicy = o.accuracyPolicy
        ? await readJsonFile(o.accuracyPolicy, AccuracyPolicySchema.partial(), "--accuracy-policy")
        : undefined;
      const calibration = o.calibration
        ? await readJsonFile(o.calibration, z.array(SampleInputSchema), "--calibration")
        : undefined;
      const sequence = o.sequence ? await readJsonFile(o.sequence, fields.sequence, "--sequence") : undefined;
      const quantize = o.quantize as "int8" | "none";
      const arch = (o.arch as unknown as string[] | undefined) ?? [];
      const line = createProgressLine();
      const up = await api.upload(file, (p) =>
        line.update(
          `uploading ${bar(p.bytes / p.total)} ${formatBytes(p.bytes)}/${formatBytes(p.total)}`,
          p.bytes / p.total,
        ),
      );
      line.done(`uploaded ${formatBytes(up.size)} sha256 ${up.sha256.slice(0, 12)}…`);
      // A tracked build: poll it and show the server's real phases and progress.
      const started = Date.now();
      const created = await waitForBuild(
        api,
        await api.startModelBuild({
          name: o.name!,
          version: o.version!,
          upload: up.sha256,
          samples,
          allowSyntheticInt8: Boolean(o.allowSyntheticInt8),
          lineage,
          modelCard,
          quantize,
          accuracyPolicy,
          calibration,
          sequence,
          ...(arch.length > 0 ? { compatibility: { arch } } : {}),
        }),
      );
      line.done(`model ${o.name}@${o.version} registered in ${((Date.now() - started) / 1000).toFixed(1)}s`);
      if (isJson(cmd)) console.log(JSON.stringify(created, null, 2));
      else printVariants(created);
    });
  models
    .command("list")
    .description("list models and versions")
    .action(async (_o: unknown, cmd: Command) => {
      console.log(JSON.stringify(await client(cmd).listModels(), null, 2));
    });

  registerGovernanceCommands(models, { client, isJson });
  registerFeedbackCommand(models, { client, isJson });
  registerModelViewCommands(models, { client, isJson });
  registerCostCommand(models, { client, isJson });

  registerRolloutCommands(program, { client, isJson });
  registerTokenCommands(program, { client });
  registerKeysCommands(program);
  registerReleaseCommands(program, { client, isJson });

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
      for (const d of list) console.log(formatDeviceLine(d));
    });
  devices
    .command("add <id>")
    .description("enroll a device; prints its MQTT password once (or writes it to --password-file)")
    .option("--tag <key=value>", "tag (repeatable)", parseTag)
    .option("--profile <profile>", "device profile id")
    .option("--password-file <file>", "write the password to this new file (mode 0600; refuses an existing file)")
    .action(
      async (
        id: string,
        o: { tag?: Record<string, string>; profile?: string; passwordFile?: string },
        cmd: Command,
      ) => {
        const api = client(cmd);
        if (!o.passwordFile) {
          console.log(JSON.stringify(await api.enrollDevice({ id, tags: o.tag, profile: o.profile }), null, 2));
          return;
        }
        // The file is claimed before enrolling: the password is shown once, so it must have a place to go.
        const res = await writeSecretFile(o.passwordFile, async () => {
          const r = await api.enrollDevice({ id, tags: o.tag, profile: o.profile });
          return { value: r.password, result: r };
        });
        if (isJson(cmd)) console.log(JSON.stringify({ id: res.id, passwordFile: o.passwordFile }, null, 2));
        else console.log(`enrolled ${res.id}; password written to ${o.passwordFile} (mode 0600)`);
      },
    );
  devices
    .command("import <csv>")
    .description("enroll every device of a CSV (header: id,profile,tags with tags as k=v;k=v), in batches")
    .requiredOption("--out <file>", "new file (mode 0600) receiving id,password of each enrolled device")
    .option("--batch <n>", "devices per request (at most 1000)", (v) => Number.parseInt(v, 10))
    .action(async (csv: string, o: { out: string; batch?: number }, cmd: Command) => {
      const r = await importDevices(client(cmd), csv, o.out, { batch: o.batch, progress: !isJson(cmd) });
      if (isJson(cmd)) console.log(JSON.stringify(r, null, 2));
      else
        for (const e of r.errors)
          console.error(`line ${e.line}: ${e.code} ${e.id ?? ""} ${e.message}`.replace("  ", " "));
      if (r.errors.length > 0) process.exitCode = 1;
    });
  return program;
}

export async function runFleetctl(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof ApiError) console.error(`error ${err.code}: ${err.message}`);
    else console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
    return exitForError(err);
  }
}

process.exitCode = await runFleetctl(process.argv);
