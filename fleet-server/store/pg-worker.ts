/**
 * The PostgreSQL side of the synchronous store bridge (issue 14, `pg-bridge.ts`): one `pg.Client`
 * in a worker thread. The main thread posts a request and blocks on `Atomics.wait`; each reply is
 * posted first and then announced by bumping a shared counter, so the main thread always finds it
 * with `receiveMessageOnPort` once it wakes. Requests run one at a time in arrival order.
 */
import { type MessagePort, workerData } from "node:worker_threads";
import pg from "pg";
import type { BridgeReply, BridgeRequest, BridgeWorkerData } from "./pg-protocol.js";

// COUNT(*), BIGINT and NUMERIC (SUM of BIGINT) arrive as strings by default; the store's values are
// counters, sequence numbers and millisecond times, all far below 2^53, so numbers are exact.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));
pg.types.setTypeParser(pg.types.builtins.NUMERIC, (v) => Number(v));

const data = workerData as BridgeWorkerData;
const counter = new Int32Array(data.signal);
const port: MessagePort = data.port;

let client: pg.Client | null = null;
let connecting: Promise<pg.Client> | null = null;

/** A client that is connected, made again after the connection was lost (the next request reconnects). */
function connected(): Promise<pg.Client> {
  if (client) return Promise.resolve(client);
  if (connecting) return connecting;
  const c = new pg.Client({
    connectionString: data.url,
    connectionTimeoutMillis: data.timeoutMs,
    // The server's own guard: a statement that runs too long is cancelled there (57014), so the
    // connection stays usable; the main thread's wait has a little more time than this.
    statement_timeout: data.timeoutMs,
    application_name: "edgefleet-fleet-server",
  });
  c.on("error", () => {
    // The connection is gone (server restart, network): the next request connects again.
    if (client === c) client = null;
  });
  connecting = c.connect().then(
    () => {
      client = c;
      connecting = null;
      return c;
    },
    (err: unknown) => {
      connecting = null;
      void c.end().catch(() => {});
      throw err;
    },
  );
  return connecting;
}

function reply(r: BridgeReply): void {
  port.postMessage(r);
  Atomics.add(counter, 0, 1);
  Atomics.notify(counter, 0);
}

async function handle(req: BridgeRequest): Promise<void> {
  if (req.op === "close") {
    const c = client;
    client = null;
    await c?.end().catch(() => {});
    reply({ id: req.id, rows: [], changes: 0 });
    port.close();
    return;
  }
  try {
    const c = await connected();
    if (req.op === "exec") {
      await c.query(req.text);
      reply({ id: req.id, rows: [], changes: 0 });
      return;
    }
    const values = req.values.map((v) => (v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v) : v));
    const res = await c.query({ text: req.text, values, ...(req.name ? { name: req.name } : {}) });
    reply({ id: req.id, rows: res.rows, changes: res.rowCount ?? 0 });
  } catch (err) {
    const e = err as { message?: string; code?: string; detail?: string; constraint?: string };
    reply({
      id: req.id,
      error: {
        message: e.message ?? String(err),
        ...(e.code !== undefined ? { code: e.code } : {}),
        ...(e.detail !== undefined ? { detail: e.detail } : {}),
        ...(e.constraint !== undefined ? { constraint: e.constraint } : {}),
      },
    });
  }
}

let queue: Promise<void> = Promise.resolve();
port.on("message", (req: BridgeRequest) => {
  queue = queue.then(() => handle(req));
});
