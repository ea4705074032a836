import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { pino } from "pino";
import { openTelemetryBuffer } from "../../agent/telemetry/telemetry-buffer.js";
import type { UnsequencedRecord } from "../../shared/schemas/telemetry.js";

/** A realistic inference record (≈ 300 bytes of JSON with an output summary). */
export function benchRecord(i: number): UnsequencedRecord {
  return {
    kind: "inference",
    ts: 1_700_000_000_000 + i,
    model: "silero-vad",
    version: "5.0.0",
    variant: "fp32",
    ok: true,
    computeMs: 0.131,
    totalMs: 0.52 + (i % 7) / 100,
    nonFinite: 0,
    probe: false,
    source: "api",
    outputs: { output: { min: 0.01, max: 0.01, mean: 0.01 }, stateN: { min: -0.5, max: 0.61, mean: 0.002 } },
  };
}

/**
 * Scenario "telemetry-ingest" (architecture.md §9): rows/s into the agent's telemetry ring (append +
 * group commit, ring accounting, WAL, `full` durability = synchronous FULL) against the anchor:
 * a raw better-sqlite3 loop inserting the same JSON rows with the same pragmas in transactions of
 * the same size. `group` = rows per commit (requests answered per event-loop turn).
 */
export async function benchTelemetryIngest(rows = 50_000, group = 100): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), "ef-bti-"));
  try {
    const records = Array.from({ length: rows }, (_, i) => benchRecord(i));
    const result: Record<string, unknown> = { scenario: "telemetry-ingest", rows, rowsPerCommit: group };
    for (const durability of ["full", "normal"] as const) {
      // Anchor: raw better-sqlite3, same file layout and pragmas, one transaction per group.
      const db = new Database(join(dir, `raw-${durability}.db`));
      db.pragma("journal_mode = WAL");
      db.pragma(`synchronous = ${durability === "full" ? "FULL" : "NORMAL"}`);
      db.exec(
        "CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, cost INTEGER NOT NULL, body TEXT NOT NULL)",
      );
      const insert = db.prepare("INSERT INTO records (kind, cost, body) VALUES (?, ?, ?)");
      const tx = db.transaction((slice: UnsequencedRecord[]) => {
        for (const r of slice) {
          const body = JSON.stringify(r);
          insert.run(r.kind, body.length, body);
        }
      });
      let t0 = performance.now();
      for (let i = 0; i < rows; i += group) tx(records.slice(i, i + group));
      const rawMs = performance.now() - t0;
      db.close();

      // Figure: the agent's buffer, with caps that never bind (eviction is measured by the tests).
      const buffer = openTelemetryBuffer({
        path: join(dir, `ring-${durability}.db`),
        durability,
        caps: { maxRows: rows * 2, maxBytes: 1 << 30 },
        log: pino({ level: "silent" }),
      });
      t0 = performance.now();
      for (let i = 0; i < rows; i += group) {
        for (const r of records.slice(i, i + group)) buffer.append(r);
        if (durability === "full") await buffer.durable();
        else buffer.commit();
      }
      const ringMs = performance.now() - t0;
      buffer.close();
      result[durability] = {
        rawRowsPerSec: Math.round(rows / (rawMs / 1000)),
        bufferRowsPerSec: Math.round(rows / (ringMs / 1000)),
        ratio: Math.round((rawMs / ringMs) * 100) / 100,
      };
    }
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
