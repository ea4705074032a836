import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { MqttClient } from "mqtt";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FleetServer, startFleetServer } from "../../../fleet-server/main.js";
import { ApiClient, ApiError } from "../../../scripts/fleetctl/api-client.js";
import type { GovernanceView } from "../../../shared/http/governance.js";
import type { ReportedState } from "../../../shared/schemas/device-state.js";
import type { SampleInput } from "../../../shared/schemas/tensor.js";
import { createTopics } from "../../../shared/topics.js";
import { memo } from "../../helpers/memo.js";
import { makeTempDir } from "../../helpers/temp-dir.js";
import { connectDevice, eventually, publish } from "./device-client.js";

const run = promisify(execFile);
const FLEETCTL = fileURLToPath(new URL("../../../bin/fleetctl.js", import.meta.url));
const MODEL = "node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx";
const topics = createTopics();

const vadSample: SampleInput = {
  name: "silence",
  inputs: {
    input: { datatype: "FP32", shape: [1, 512], data: Array.from({ length: 512 }, (_, i) => Math.sin(i / 8) * 0.1) },
    state: { datatype: "FP32", shape: [2, 1, 128], data: new Array(256).fill(0) },
    sr: { datatype: "INT64", shape: [], data: [16000] },
  },
};

/** The error an API call fails with (the test fails if it succeeds). */
async function refusal(p: Promise<unknown>): Promise<ApiError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApiError);
  return err as ApiError;
}

/**
 * Issue 21, approvals and lifecycle, with real parts: a fleet server listening on HTTP with its
 * SQLite store and embedded broker, tokens with roles, `fleetctl` as real processes, and a device
 * (a bare MQTT client) reporting what it runs. One story, in order: a canary rollout of an
 * unapproved version may not go further (create, promote, resume, the planner's own advance);
 * the pusher cannot approve, the same approver counts once, a refusal holds it back, two distinct
 * approvers clear it; a completed 100 % rollout makes it production; deprecated and retired
 * versions show their devices; a retired version cannot be rolled out; all of it audited.
 */
describe("governance: approvals and lifecycle stages (issue 21)", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let server: FleetServer;
  let admin: ApiClient;
  const tokens: Record<"pusher" | "alice" | "bob" | "viewer", { id: string; token: string }> = {} as never;
  const as = (who: keyof typeof tokens) => new ApiClient({ baseUrl: server.httpUrl, token: tokens[who].token });
  const passwords: Record<string, string> = {};
  const clients: MqttClient[] = [];
  let canary = ""; // the rollout created before the policy existed
  let canaryDevice = "";
  let bundleSha = "";

  /** Runs fleetctl as `who`; a non-zero exit is returned, not thrown. */
  const cli = (who: keyof typeof tokens, ...args: string[]) =>
    run(process.execPath, [FLEETCTL, "--server", server.httpUrl, ...args], {
      env: { ...process.env, EDGEFLEET_TOKEN: tokens[who].token },
    }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
  const cliJson = async (who: keyof typeof tokens, ...args: string[]): Promise<GovernanceView> => {
    const r = await cli(who, "--json", ...args);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as GovernanceView;
  };
  const actor = (who: keyof typeof tokens) => `token:${tokens[who].id}`;
  const twoStages = { percent: 10 } as const;

  beforeAll(async () => {
    tmp = await makeTempDir("ef-gov-");
    server = await startFleetServer({
      dataDir: join(tmp.path, "server"),
      httpPort: 0,
      mqttPort: 0,
      checkResponses: true,
      log: pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
    });
    admin = new ApiClient({ baseUrl: server.httpUrl, token: server.adminToken });
    for (const [name, role] of [
      ["pusher", "operator"],
      ["alice", "operator"],
      ["bob", "operator"],
      ["viewer", "viewer"],
    ] as const) {
      const t = await admin.createToken({ name, role });
      tokens[name] = { id: t.id, token: t.token };
    }
    for (let i = 0; i < 10; i++) {
      const d = await admin.enrollDevice({ id: `gov-${i}`, tags: { site: "lab" } });
      passwords[d.id] = d.password;
    }
    const up = await as("pusher").upload(MODEL);
    const v = await as("pusher").createModel({
      name: "vad",
      version: "1.0.0",
      upload: up.sha256,
      samples: [vadSample],
      quantize: "none",
    });
    bundleSha = v.variants.find((x) => x.variant === "fp32")!.bundle!.sha256;
  });

  afterAll(async () => {
    for (const c of clients) c.end(true);
    await server?.close();
    await tmp?.cleanup();
  });

  /**
   * The cases are one story (a version pushed, held at the canary, approved, in production, then
   * retired), so each step runs once, after the steps before it: in order the cases share them,
   * and a case run alone (`vitest -t`, scripts/ci/tests-alone.ts) runs the story up to itself.
   */
  const step1 = memo(async () => {
    const g = await admin.versionGovernance("vad", "1.0.0");
    expect(g).toMatchObject({ stage: "candidate", pushedBy: actor("pusher"), approved: true });
    expect(g.policy).toMatchObject({ requiredApprovals: 0, updatedAt: null });

    // Before any policy: a canary that would go to 100 % is accepted (it is held later instead).
    const r = await admin.createRollout({
      model: "vad",
      version: "1.0.0",
      variant: "fp32",
      target: { tags: { site: "lab" } },
      stages: [twoStages, { percent: 100 }],
    });
    canary = r.id;
    expect(r.devices).toHaveLength(1);
    canaryDevice = r.devices[0]!.deviceId;

    const byOperator = await refusal(as("alice").setApprovalPolicy("vad", { requiredApprovals: 2 }));
    expect([byOperator.status, byOperator.code]).toEqual([403, "FORBIDDEN"]);
    const p = await admin.setApprovalPolicy("vad", { requiredApprovals: 2 });
    expect(p).toMatchObject({
      model: "vad",
      requiredApprovals: 2,
      maxUnapprovedPercent: 10,
      updatedBy: "bootstrap-admin",
    });
    expect(await as("viewer").approvalPolicy("vad")).toEqual(p);
  });
  const step2 = memo(async () => {
    await step1();
    const wide = await refusal(
      admin.createRollout({
        model: "vad",
        version: "1.0.0",
        target: { tags: { site: "lab" } },
        stages: [twoStages, { percent: 50 }],
        supersedes: [canary],
      }),
    );
    expect([wide.status, wide.code]).toEqual([409, "APPROVAL_REQUIRED"]);
    expect(wide.message).toMatch(
      /approval policy of model vad requires 2 approval\(s\).*past 10%.*has 0.*stage 2 asks for 50%/,
    );
    // Within the share is fine: the canary cohort is what an unapproved version is for.
    const promote = await refusal(admin.rolloutCommand(canary, "promote"));
    expect([promote.status, promote.code]).toEqual([409, "APPROVAL_REQUIRED"]);

    // The canary device commits: the stage passes its gates, and the planner holds instead of advancing.
    const c = await connectDevice(server.mqttUrl, canaryDevice, passwords[canaryDevice]!);
    clients.push(c);
    const reported: ReportedState = {
      deviceId: canaryDevice,
      agentVersion: "0.1.0",
      profile: "generic",
      arch: "x64",
      ts: new Date().toISOString(),
      lastDesiredSeq: 1,
      models: [
        {
          model: "vad",
          state: "committed",
          committed: { version: "1.0.0", variant: "fp32", sha256: bundleSha, releaseCounter: 1 },
          candidate: null,
          rolloutId: canary,
        },
      ],
    };
    await publish(c, topics.device(canaryDevice, "reported"), JSON.stringify(reported), true);
    const held = await eventually(async () => {
      const r = await admin.getRollout(canary);
      return r.status === "paused" ? r : undefined;
    }, 400);
    expect(held.stage.index).toBe(0);
    expect(JSON.stringify(held)).toMatch(/APPROVAL_REQUIRED: stage 2 refused/);
    const resume = await refusal(admin.rolloutCommand(canary, "resume"));
    expect([resume.status, resume.code]).toEqual([409, "APPROVAL_REQUIRED"]);
  });
  const step3 = memo(async () => {
    await step2();
    // Through the API (fleetctl is run below for the others; each process costs a second or two).
    const own = await refusal(as("pusher").reviewVersion("vad", "1.0.0", "approve", "looks good to me"));
    expect([own.status, own.code]).toEqual([403, "FORBIDDEN"]);
    expect(own.message).toMatch(/pushed vad 1\.0\.0 and may not review it/);

    let g = await cliJson("alice", "models", "approve", "vad", "1.0.0", "--comment", "eval set passed");
    expect(g).toMatchObject({ stage: "candidate", approvedBy: [actor("alice")], approved: false });
    g = await as("alice").reviewVersion("vad", "1.0.0", "approve", "again");
    expect(g).toMatchObject({ stage: "candidate", approvedBy: [actor("alice")], approved: false });
    expect(g.reviews.filter((r) => r.current)).toHaveLength(1);

    g = await cliJson("bob", "models", "refuse", "vad", "1.0.0", "--comment", "latency regressed on pi4");
    expect(g).toMatchObject({ stage: "candidate", refusedBy: [actor("bob")], approved: false });
    expect(g.reviews.at(-1)).toMatchObject({
      actor: actor("bob"),
      decision: "refuse",
      comment: "latency regressed on pi4",
    });
    const stillRefused = await refusal(admin.rolloutCommand(canary, "resume"));
    expect(stillRefused.message).toMatch(/has 1 and is refused by token:/);
    const noCommand = await refusal(as("alice").setVersionStage("vad", "1.0.0", { stage: "approved" }));
    expect([noCommand.status, noCommand.code]).toEqual([409, "STAGE_TRANSITION_INVALID"]);
    const byViewer = await refusal(as("viewer").reviewVersion("vad", "1.0.0", "approve", "me too"));
    expect(byViewer.status).toBe(403);

    g = await as("bob").reviewVersion("vad", "1.0.0", "approve", "fixed by the new profile");
    expect(g).toMatchObject({
      stage: "approved",
      approvedBy: [actor("alice"), actor("bob")],
      refusedBy: [],
      approved: true,
    });
    expect(g.history).toEqual([
      expect.objectContaining({ from: "candidate", to: "approved", cause: "approvals", actor: actor("bob") }),
    ]);
    // Reviews are taken on candidates only.
    const late = await refusal(as("alice").reviewVersion("vad", "1.0.0", "refuse", "changed my mind"));
    expect([late.status, late.code]).toEqual([409, "CONFLICT"]);

    const resumed = await admin.rolloutCommand(canary, "resume");
    expect(resumed.status).toBe("running");
  });
  const step4 = memo(async () => {
    await step3();
    const r = await admin.createRollout({
      model: "vad",
      version: "1.0.0",
      variant: "fp32",
      target: { deviceIds: [canaryDevice] },
      stages: [{ percent: 100 }],
      supersedes: [canary],
    });
    await eventually(async () => ((await admin.getRollout(r.id)).status === "completed" ? true : undefined), 400);
    const g = await eventually(async () => {
      const v = await admin.versionGovernance("vad", "1.0.0");
      return v.stage === "production" ? v : undefined;
    }, 400);
    expect(g.history.at(-1)).toMatchObject({
      from: "approved",
      to: "production",
      cause: "rollout",
      actor: `rollout:${r.id}`,
    });
  });
  const step5 = memo(async () => {
    await step4();
    const skip = await refusal(as("alice").setVersionStage("vad", "1.0.0", { stage: "retired" }));
    expect([skip.status, skip.code]).toEqual([409, "STAGE_TRANSITION_INVALID"]);
    expect(skip.message).toMatch(/production → retired is not a lifecycle transition/);
    expect((await admin.staleDevices()).devices).toEqual([]);

    const dep = await cliJson("alice", "models", "stage", "vad", "1.0.0", "deprecated", "--comment", "2.0 is out");
    expect(dep.stage).toBe("deprecated");
    expect((await as("viewer").staleDevices("vad")).devices).toEqual([
      { deviceId: canaryDevice, model: "vad", version: "1.0.0", stage: "deprecated", slot: "active" },
    ]);
    expect((await admin.staleDevices("other")).devices).toEqual([]);

    await as("alice").setVersionStage("vad", "1.0.0", { stage: "retired", comment: "end of support" });
    expect((await admin.staleDevices()).devices).toEqual([
      { deviceId: canaryDevice, model: "vad", version: "1.0.0", stage: "retired", slot: "active" },
    ]);
    const retired = await refusal(
      admin.createRollout({ model: "vad", version: "1.0.0", target: { tags: { site: "lab" } } }),
    );
    expect([retired.status, retired.code]).toEqual([409, "MODEL_VERSION_RETIRED"]);
    expect(retired.message).toMatch(/vad 1\.0\.0 is retired and cannot be rolled out/);
    const final = await refusal(as("alice").setVersionStage("vad", "1.0.0", { stage: "deprecated" }));
    expect(final.code).toBe("STAGE_TRANSITION_INVALID");
  });
  const step6 = memo(async () => {
    await step5();
    const { entries } = await admin.listAudit(0);
    const of = (route: string) =>
      entries
        .filter((e) => e.route === `/v1/models/:name/versions/:version/${route}`)
        .map((e) => [e.actor, e.status, e.errorCode]);
    expect(of("approvals")).toEqual([
      [actor("pusher"), 403, "FORBIDDEN"],
      [actor("alice"), 200, null],
      [actor("alice"), 200, null],
      [actor("viewer"), 403, "FORBIDDEN"],
      [actor("bob"), 200, null],
    ]);
    expect(of("refusals")).toEqual([
      [actor("bob"), 200, null],
      [actor("alice"), 409, "CONFLICT"],
    ]);
    expect(of("stage").map((e) => e[1])).toEqual([409, 409, 200, 200, 409]);
  });

  it("a pushed version is a candidate, its pusher recorded; the policy is the admin's to set", () => step1());
  it("an unapproved version does not go past the canary share: create, promote, the planner, resume", () => step2());
  it("approvals: never the pusher, the same approver once, a refusal holds, two distinct approvers clear it", () =>
    step3());
  it("a completed 100 % rollout makes the version production", () => step4());
  it("deprecated and retired: an illegal step refused, the devices listed, a retired version never rolled out", () =>
    step5());
  it("every review and stage command is in the audit log, with its actor and outcome", () => step6());
});
