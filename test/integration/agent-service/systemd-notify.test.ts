import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createSystemdNotifier,
  loadNotifyTransport,
  statusLine,
  watchdogIntervalMs,
} from "../../../agent/service/systemd-notify.js";
import { type NotifySocket, openNotifySocket } from "../../helpers/notify-socket.js";
import { makeTempDir } from "../../helpers/temp-dir.js";

/**
 * sd_notify (issue 16) through the real addon to a real datagram socket read back as systemd would.
 * The agent-process side (READY only once it serves) is test/e2e/agent-systemd.test.ts.
 */
const log = pino({ level: "silent" });

describe("watchdog interval and status line (pure)", () => {
  it.each([
    [{}, 10, null],
    [{ WATCHDOG_USEC: "0" }, 10, null],
    [{ WATCHDOG_USEC: "junk" }, 10, null],
    [{ WATCHDOG_USEC: "20000000" }, 10, 10_000],
    [{ WATCHDOG_USEC: "20000000", WATCHDOG_PID: "10" }, 10, 10_000],
    [{ WATCHDOG_USEC: "20000000", WATCHDOG_PID: "11" }, 10, null], // inherited by a child: not ours to ping
  ])("%j, pid %d → %j ms", (env, pid, want) => {
    expect(watchdogIntervalMs(env, pid)).toBe(want);
  });

  it("one line per model: state, committed version, candidate", () => {
    expect(statusLine({ models: [] })).toBe("serving: no models installed");
    const ref = (version: string) => ({ version, sha256: "a".repeat(64) });
    const line = statusLine({
      models: [
        { model: "vad", state: "committed", committed: ref("1.0.0"), candidate: null, rolloutId: null },
        { model: "kws", state: "probation", committed: ref("1.0.0"), candidate: ref("2.0.0"), rolloutId: "r1" },
      ],
    } as Parameters<typeof statusLine>[0]);
    expect(line).toBe("serving: vad committed 1.0.0; kws probation 1.0.0 → 2.0.0");
    expect(line).not.toMatch(/\n/);
  });
});

describe("notifier over a real NOTIFY_SOCKET", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let sock: NotifySocket;

  beforeAll(async () => {
    expect(loadNotifyTransport(), "the sd-notify addon is built by npm ci").not.toBeNull();
    tmp = await makeTempDir("ef-notify-");
    sock = await openNotifySocket(join(tmp.path, "notify.sock"));
  });
  afterAll(async () => {
    await sock?.close();
    await tmp?.cleanup();
  });

  it("READY=1 with status and MAINPID, pings from the event loop (none while it is blocked), STOPPING=1", async () => {
    let status = "serving: vad committed 1.0.0";
    const n = createSystemdNotifier({
      env: { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: "40000" },
      pid: process.pid,
      log,
      currentStatus: () => status,
    });
    expect(n.watchdogIntervalMs).toBe(20);
    n.ready(status);
    const ready = await sock.next((m) => m.startsWith("READY=1"));
    expect(ready.message).toBe(`READY=1\nSTATUS=serving: vad committed 1.0.0\nMAINPID=${process.pid}`);
    await sock.next((m) => m === "WATCHDOG=1", ready.index + 1); // unchanged status: not repeated
    // A new status rides on the next ping, once.
    status = "serving: vad probation 1.0.0 → 2.0.0";
    const withStatus = await sock.next((m) => m.startsWith("WATCHDOG=1\nSTATUS="), ready.index + 1);
    expect(withStatus.message).toBe(`WATCHDOG=1\nSTATUS=${status}`);

    // Block the loop for many intervals between two markers: a stuck loop must send no ping.
    n.status("marker: block begins");
    const until = Date.now() + 300;
    while (Date.now() < until) {
      /* a stuck event loop */
    }
    n.status("marker: block ends");
    const begin = await sock.next((m) => m === "STATUS=marker: block begins");
    const end = await sock.next((m) => m === "STATUS=marker: block ends", begin.index);
    expect(sock.messages.slice(begin.index + 1, end.index)).toEqual([]);
    // And the pings resume once the loop runs again.
    await sock.next((m) => m.startsWith("WATCHDOG=1"), end.index + 1);

    n.stopping();
    const stop = await sock.next((m) => m.startsWith("STOPPING=1"), end.index + 1);
    expect(stop.message).toBe("STOPPING=1\nSTATUS=stopping");
    // No ping after STOPPING.
    await new Promise((r) => setTimeout(r, 100));
    expect(sock.messages.slice(stop.index + 1)).toEqual([]);
  });

  it("no NOTIFY_SOCKET: nothing is sent and no timer runs; a missing socket is logged, not thrown", async () => {
    const quiet = createSystemdNotifier({ env: { WATCHDOG_USEC: "40000" }, pid: process.pid, log });
    expect(quiet.watchdogIntervalMs).toBeNull();
    const before = sock.messages.length;
    quiet.ready("x");
    quiet.stopping();
    const lines: string[] = [];
    const gone = createSystemdNotifier({
      env: { NOTIFY_SOCKET: join(tmp.path, "absent.sock") },
      pid: process.pid,
      log: pino({ level: "warn" }, { write: (l: string) => void lines.push(l) }),
    });
    expect(() => gone.ready("x")).not.toThrow();
    expect(() => gone.status("y")).not.toThrow();
    expect(lines).toHaveLength(1); // once per run of failures
    expect(lines[0]).toContain("sd_notify failed");
    expect(sock.messages.length).toBe(before);
  });

  it("refuses a relative or oversized socket path with a clear error (the addon's own checks)", () => {
    const t = loadNotifyTransport()!;
    expect(() => t.send("relative.sock", "READY=1")).toThrow(/absolute path/);
    expect(() => t.send(`/${"x".repeat(200)}`, "READY=1")).toThrow(/absolute path/);
    expect(() => t.send(sock.path, "")).toThrow(/1\.\.4096/);
  });
});
