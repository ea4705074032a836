import { readFile } from "node:fs/promises";
import { type Command, InvalidArgumentError } from "commander";
import { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";
import { DISPLAY_STATES, type DisplayState } from "../../shared/rollout-display.js";
import { formatFromPath, parseStructuredText, sniffFormat } from "../../shared/structured-text.js";
import {
  type ApiClient,
  ApiError,
  type RolloutCommand,
  type RolloutMemberView,
  type RolloutView,
} from "./api-client.js";
import { exitForRollout } from "./exit-codes.js";
import { bar, formatBytes } from "./progress.js";

/**
 * `fleetctl rollouts ...`: create (flags and/or a JSON or YAML file), list, status [--watch] and
 * the operator commands. JSON and YAML are the same document, see docs/operations.md "Rollouts".
 */
export interface RolloutCommandDeps {
  client(cmd: Command): ApiClient;
  isJson(cmd: Command): boolean;
}

function num(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`not a number: "${value}"`);
  return n;
}

/** `--stage 10:300` = 10% with a 300 s soak (repeatable, in order). */
function parseStage(value: string, previous: { percent: number; soakSeconds?: number }[] = []) {
  const [p, s] = value.split(":");
  const percent = Number(p);
  const soakSeconds = s === undefined ? undefined : Number(s);
  if (!Number.isFinite(percent) || (soakSeconds !== undefined && !Number.isFinite(soakSeconds))) {
    throw new InvalidArgumentError(`stage must be percent[:soakSeconds], got "${value}"`);
  }
  return [...previous, soakSeconds === undefined ? { percent } : { percent, soakSeconds }];
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, ...value.split(",").filter((s) => s.length > 0)];
}

/** Only the shape flags are merged into; the server checks the whole definition. */
const DefinitionFileSchema = z.record(z.string(), z.unknown());
/**
 * A rollout definition assembled from a file and flags, not checked here: the server parses it
 * with the contract's `CreateRolloutRequestSchema` and answers 400 with the path of any bad field,
 * the same for flags, JSON and YAML (`ApiClient.createRolloutDraft`).
 */
export type RolloutDraft = z.infer<typeof DefinitionFileSchema>;

/**
 * A definition file's text: JSON or YAML by the file's extension, by its content when the name
 * says neither. Parsed here rather than sent as is, because flags go on top of it.
 */
export function parseDefinitionFile(path: string, text: string): RolloutDraft {
  try {
    const value = parseStructuredText(text, formatFromPath(path) ?? sniffFormat(text), path);
    const file = DefinitionFileSchema.safeParse(value);
    if (!file.success) {
      throw new EdgeFleetError("VALIDATION_FAILED", `${path}: a rollout definition is a mapping (model, version, ...)`);
    }
    return file.data;
  } catch (err) {
    // fleetctl prints API errors as `error CODE: message`; status 0 marks one found locally.
    if (err instanceof EdgeFleetError) throw new ApiError(0, err.code, err.message, err.details);
    throw err;
  }
}

/** Builds the create body: the file (if any) first, flags on top. */
export function rolloutBodyFromFlags(o: Record<string, unknown>, file: RolloutDraft = {}): RolloutDraft {
  const body: Record<string, unknown> = { ...file };
  const set = (k: string, v: unknown) => {
    if (v !== undefined) body[k] = v;
  };
  set("model", o.model);
  set("version", o.version);
  set("variant", o.variant);
  set("strategy", o.strategy);
  if (o.devices || o.tag || o.profile) {
    body.target = {
      ...((file.target as object | undefined) ?? {}),
      ...(o.devices ? { deviceIds: o.devices } : {}),
      ...(o.tag ? { tags: o.tag } : {}),
      ...(o.profile ? { profiles: o.profile } : {}),
    };
  }
  const gates: Record<string, number> = {};
  if (o.minDevices !== undefined) gates.minDevices = o.minDevices as number;
  if (o.maxFailedPercent !== undefined) gates.maxFailedPercent = o.maxFailedPercent as number;
  if (o.maxP95LatencyRatio !== undefined) gates.maxP95LatencyRatio = o.maxP95LatencyRatio as number;
  if (o.maxErrorRatePercent !== undefined) gates.maxErrorRatePercent = o.maxErrorRatePercent as number;
  const stages = (o.stage as { percent: number }[] | undefined) ?? (body.stages as { percent: number }[] | undefined);
  // Flag gates apply to every stage (per-stage gates need a file).
  if (stages) body.stages = stages.map((s) => (Object.keys(gates).length ? { ...s, gates: { ...gates } } : s));
  else if (Object.keys(gates).length) body.stages = [{ percent: 100, gates }];
  if (o.abortAction !== undefined) body.abort = { ...((file.abort as object) ?? {}), action: o.abortAction };
  if (o.maxPerMinute !== undefined) body.rate = { maxPerMinute: o.maxPerMinute as number };
  if (o.windowCron !== undefined) {
    body.maintenanceWindow = {
      cron: o.windowCron,
      durationMinutes: (o.windowMinutes as number | undefined) ?? 60,
      ...(o.windowTz ? { timeZone: o.windowTz } : {}),
    };
  }
  if (o.probationSeconds !== undefined) {
    body.healthPolicy = { ...((file.healthPolicy as object) ?? {}), probationSeconds: o.probationSeconds };
  }
  if (o.supersedes) body.supersedes = o.supersedes;
  return body;
}

function countsLine(c: Partial<Record<DisplayState | "total" | "removed", number>>): string {
  const line = DISPLAY_STATES.map((s) => `${s} ${c[s] ?? 0}`).join("  ");
  // Only shadow/A-B rollouts that were aborted or rolled back have any; others keep their line.
  return c.removed ? `${line}  removed ${c.removed}` : line;
}

type Member = RolloutMemberView;
type StageCounts = Record<DisplayState | "total", number> & { removed?: number };

/** What the status display reads of a rollout view: a whole `RolloutView` fits, so does a hand-made one in a test. */
export type RolloutDisplay = Pick<RolloutView, "id" | "model" | "version" | "variant" | "status" | "createdAt"> &
  Partial<Pick<RolloutView, "strategy" | "reason" | "stage">> & {
    stages?: { index: number; percent: number; soakSeconds: number; counts: StageCounts }[];
    gates?: Pick<
      NonNullable<RolloutView["gates"]>,
      "executed" | "failed" | "failedPercent" | "breached" | "waitingFor"
    >;
    devices: (Pick<Member, "deviceId" | "state"> &
      Partial<Pick<Member, "stage" | "progress" | "error" | "rollback" | "runningNow" | "note">>)[];
    counts: Partial<Record<DisplayState | "total" | "removed" | "inProgress", number>>;
  };

/** Pure: the status display, one string per line (used by `status` and its `--watch`). */
export function formatRollout(s: RolloutDisplay): string[] {
  const lines: string[] = [];
  const stage = s.stage ? `  stage ${s.stage.number}/${s.stage.of} (${s.stage.percent}%)` : "";
  lines.push(`rollout ${s.id}  ${s.model}@${s.version} (${s.variant})  ${s.strategy ?? ""}  ${s.status}${stage}`);
  if (s.reason) lines.push(`  reason: ${s.reason}`);
  for (const st of s.stages ?? []) {
    const c = st.counts;
    const done = c.total === 0 ? 0 : (c.committed + c.failed + c.reverted + (c.removed ?? 0)) / c.total;
    const mark = s.stage?.index === st.index ? ">" : " ";
    const soak = st.soakSeconds > 0 ? ` soak ${st.soakSeconds}s` : "";
    lines.push(
      `${mark} stage ${st.index + 1} ${String(st.percent).padStart(3)}%${soak} ${bar(done, 16)} ${countsLine(c)}`,
    );
  }
  if (!s.stages) lines.push(`  ${countsLine(s.counts)}`);
  if (s.stage?.soakStartedAt) lines.push(`  soaking since ${s.stage.soakStartedAt}`);
  if (s.gates) {
    const g = s.gates;
    const failed = g.failedPercent === null ? "-" : `${g.failedPercent.toFixed(1)}%`;
    const state = g.breached ? `TRIPPED: ${g.breached}` : g.waitingFor ? `waiting: ${g.waitingFor}` : "passing";
    lines.push(`  gates: executed ${g.executed}, failed ${g.failed} (${failed}) — ${state}`);
  }
  for (const d of s.devices) {
    const prog = d.progress ? `  ${formatBytes(d.progress.bytes)}/${formatBytes(d.progress.total)}` : "";
    const err = d.error ? `  ${d.error.code}: ${d.error.message}` : "";
    const back = d.rollback ? `  rollback: ${d.rollback.state}` : "";
    const st = d.stage === undefined ? "" : `s${d.stage + 1} `;
    // A failed or reverted device still serves something: say what (issue 20 §4).
    const ended = d.state === "failed" || d.state === "reverted";
    const runs = ended && d.runningNow ? `  runs ${d.runningNow.version} (${d.runningNow.variant})` : "";
    lines.push(`  ${st}${d.deviceId.padEnd(24)} ${d.state.padEnd(12)}${prog}${err}${back}${runs}`);
    if (d.note) lines.push(`      note: ${d.note}`);
  }
  return lines;
}

/**
 * Pure: the rollout on one line, for `--wait`/`--watch` when stdout is not a terminal (issue 23:
 * a redrawn screen in a log or pipe is unreadable). Printed only when it changes, so a log holds
 * one line per change: status, stage, counts, the gates' state and the reason.
 */
export function formatRolloutChange(s: RolloutDisplay): string {
  const stage = s.stage ? ` stage ${s.stage.number}/${s.stage.of} (${s.stage.percent}%)` : "";
  const c = s.counts;
  const counts = DISPLAY_STATES.filter((k) => (c[k] ?? 0) > 0)
    .map((k) => `${k} ${c[k]}`)
    .join(", ");
  const g = s.gates;
  const gates = g
    ? ` | gates ${g.breached ? `TRIPPED: ${g.breached}` : g.waitingFor ? `waiting: ${g.waitingFor}` : "passing"}`
    : "";
  const reason = s.reason ? ` | reason: ${s.reason}` : "";
  return `rollout ${s.id} ${s.status}${stage} | ${c.total ?? s.devices.length} devices: ${counts || "none yet"}${gates}${reason}`;
}

function print(s: RolloutView, json: boolean): void {
  console.log(json ? JSON.stringify(s, null, 2) : formatRollout(s).join("\n"));
}

/**
 * Redraws the display in place on a terminal; elsewhere prints one line per change and, at the
 * end, the whole display once.
 */
async function watch(api: ApiClient, id: string, json: boolean, timeoutSeconds?: number): Promise<RolloutView> {
  // With --json the progress goes to stderr, so stdout holds one JSON document.
  const out = json ? process.stderr : process.stdout;
  const tty = out.isTTY === true;
  let last = "";
  let seen: RolloutView | null = null;
  try {
    return await api.waitForRollout(id, {
      intervalMs: 1000,
      timeoutMs: (timeoutSeconds ?? 7 * 24 * 3600) * 1000,
      onUpdate: (s) => {
        seen = s;
        const text = tty ? formatRollout(s).join("\n") : formatRolloutChange(s);
        if (text === last) return;
        last = text;
        out.write(tty ? `\x1b[H\x1b[2J${text}\n` : `${text}\n`);
      },
    });
  } catch (err) {
    // `--timeout` passed: the rollout as last seen (still moving: exit TIMED_OUT).
    if (err instanceof ApiError && err.code === "TIMEOUT" && seen) return seen;
    throw err;
  }
}

/** Follows a rollout until it stops moving (or `timeout`), prints it, and sets the pipeline exit code. */
async function waitAndExit(api: ApiClient, id: string, json: boolean, timeout?: number): Promise<void> {
  const s = await watch(api, id, json, timeout);
  // On a terminal the last redraw is the display; in a log, the change lines end with it.
  if (json || process.stdout.isTTY !== true) print(s, json);
  process.exitCode = exitForRollout(s);
}

export function registerRolloutCommands(program: Command, deps: RolloutCommandDeps): void {
  const rollouts = program.command("rollouts").description("staged rollouts of model versions to devices");
  rollouts
    .command("create")
    .description("roll a model version out (flags, or --file rollout.yaml|.json with flags on top)")
    .option("--file <path>", "rollout definition, JSON (.json) or YAML (.yaml, .yml; other names: by content)")
    .option("--model <name>")
    .option("--version <semver>")
    .option("--variant <variant>", "bundle variant (fp32, int8); omitted = chosen per device from its profile")
    .option("--strategy <name>", "canary | all-at-once | shadow | ab")
    .option("--devices <ids>", "comma-separated device ids", collect)
    .option("--tag <key=value>", "devices with this tag (repeatable, all must match)", collect)
    .option("--profile <profile>", "devices with this profile (repeatable)", collect)
    .option("--stage <percent[:soakSeconds]>", "a canary stage (repeatable, in order)", parseStage)
    .option("--min-devices <n>", "gate: executed devices before gates decide", num)
    .option("--max-failed-percent <n>", "gate: failed devices", num)
    .option("--max-p95-latency-ratio <n>", "gate: median candidate/baseline p95", num)
    .option("--max-error-rate-percent <n>", "gate: pooled candidate error rate", num)
    .option("--abort-action <action>", "pause | rollback when a gate trips")
    .option("--max-per-minute <n>", "rate: new devices per minute", num)
    .option("--window-cron <cron>", "maintenance window start (node-cron syntax)")
    .option("--window-minutes <n>", "maintenance window length", num)
    .option("--window-tz <zone>", "maintenance window time zone (IANA)")
    .option("--probation-seconds <n>", "probation window on each device", num)
    .option("--supersedes <ids>", "in-flight rollouts this one replaces", collect)
    .option("--watch", "follow the rollout with a live display")
    .option("--wait", "same as --watch")
    .option("--timeout <seconds>", "with --wait: give up after this long (exit 7, the rollout goes on)", num)
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const api = deps.client(cmd);
      const path = o.file as string | undefined;
      const file = path ? parseDefinitionFile(path, await readFile(path, "utf8")) : {};
      const created = await api.createRolloutDraft(rolloutBodyFromFlags(o, file));
      const follow = o.watch === true || o.wait === true;
      const final = follow ? await watch(api, created.id, deps.isJson(cmd), o.timeout as number | undefined) : created;
      print(final, deps.isJson(cmd));
      if (follow) process.exitCode = exitForRollout(final);
    });
  rollouts
    .command("list")
    .description("list rollouts")
    .action(async (_o: unknown, cmd: Command) => {
      const { rollouts: list } = await deps.client(cmd).listRollouts();
      if (deps.isJson(cmd)) return void console.log(JSON.stringify(list, null, 2));
      for (const r of list) {
        const stage = r.stage ? `stage ${r.stage.number}/${r.stage.of}` : "";
        const c = r.counts;
        console.log(
          `${r.id}  ${`${r.model}@${r.version}`.padEnd(24)} ${String(r.status).padEnd(12)} ${stage.padEnd(11)} committed ${c.committed}/${c.total} failed ${c.failed}`,
        );
      }
    });
  rollouts
    .command("status <id>")
    .description("show a rollout: stages, gates and devices")
    .option("--watch", "live per-stage progress until the rollout stops moving")
    .option("--timeout <seconds>", "with --watch: give up after this long (exit 7)", num)
    .action(async (id: string, o: { watch?: boolean; timeout?: number }, cmd: Command) => {
      const api = deps.client(cmd);
      if (o.watch) return waitAndExit(api, id, deps.isJson(cmd), o.timeout);
      print(await api.getRollout(id), deps.isJson(cmd));
    });
  rollouts
    .command("wait <id>")
    .description("wait until a rollout stops moving; exit 0 completed, 5 stopped by a gate, 6 rolled back, 7 timed out")
    .option("--timeout <seconds>", "give up after this long (exit 7, the rollout goes on)", num)
    .action((id: string, o: { timeout?: number }, cmd: Command) =>
      waitAndExit(deps.client(cmd), id, deps.isJson(cmd), o.timeout),
    );
  const commands: [RolloutCommand, string][] = [
    ["pause", "stop assigning devices (devices already assigned carry on)"],
    ["resume", "continue a paused rollout; failures so far stop counting against the gates"],
    ["abort", "stop for good; devices keep what they serve (shadow/ab: the side version is removed)"],
    ["rollback", "move every touched device back to its previous version (re-released)"],
    ["promote", "skip to the last stage (shadow/ab: serve the new version as active)"],
  ];
  for (const [name, description] of commands) {
    rollouts
      .command(`${name} <id>`)
      .description(description)
      .action(async (id: string, _o: unknown, cmd: Command) => {
        print(await deps.client(cmd).rolloutCommand(id, name), deps.isJson(cmd));
      });
  }
}
