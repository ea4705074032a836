import { type AddressInfo, createServer, type Socket, connect as tcpConnect } from "node:net";

/**
 * A loopback TCP proxy that misbehaves on demand, for flaky-network tests (issue 23, broker
 * conformance): put it between an MQTT client and a real broker and
 * - `pause()`   stops forwarding (one direction or both) but keeps every socket open; the bytes wait
 *               in the kernel buffers (backpressure) and `resume()` delivers them: a stalled link;
 * - `drop()`    turns the live connections into black holes: bytes are read and discarded in both
 *               directions, no FIN, no RST, the sockets stay open: a half-open connection (a NAT
 *               that forgot the flow, a cable pulled somewhere in between). Only keepalive notices;
 * - `reset()`   sends an RST to both ends of every live connection (`socket.resetAndDestroy`);
 * - `refuse()`  resets every new connection at once until `accept()`: the broker is unreachable.
 * New connections made while paused are accepted and paused too.
 */
export type Direction = "up" | "down" | "both";

export interface TcpProxy {
  port: number;
  /** `mqtt://127.0.0.1:<port>`. */
  url: string;
  /** Connections accepted so far (including refused ones). */
  accepted(): number;
  /** Connections currently forwarded or held (neither black-holed nor closed). */
  live(): number;
  pause(direction?: Direction): void;
  resume(): void;
  drop(): void;
  reset(): void;
  refuse(): void;
  accept(): void;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket;
  holed: boolean;
}

export async function startTcpProxy(target: { host?: string; port: number }): Promise<TcpProxy> {
  const host = target.host ?? "127.0.0.1";
  const pairs = new Set<Pair>();
  const holes = new Set<Pair>();
  let accepted = 0;
  let refusing = false;
  let paused = { up: false, down: false };

  /** Applies the current pause state to one pair (socket.pause stops reading: nothing is lost). */
  const apply = (p: Pair) => {
    if (p.holed) return;
    if (paused.up) p.client.pause();
    else p.client.resume();
    if (paused.down) p.upstream.pause();
    else p.upstream.resume();
  };

  const server = createServer({ pauseOnConnect: true }, (client) => {
    accepted += 1;
    client.on("error", () => undefined);
    if (refusing) {
      client.resetAndDestroy();
      return;
    }
    const upstream = tcpConnect(target.port, host);
    upstream.on("error", () => undefined);
    upstream.pause();
    const pair: Pair = { client, upstream, holed: false };
    pairs.add(pair);
    const forward = (from: Socket, to: Socket) =>
      from.on("data", (chunk: Buffer) => {
        if (!pair.holed) to.write(chunk);
      });
    forward(client, upstream);
    forward(upstream, client);
    // One side closing closes the other the same way a real path would (unless black-holed).
    const closeOther = (other: Socket, hadError: boolean) => {
      pairs.delete(pair);
      if (pair.holed) return;
      if (hadError) other.resetAndDestroy();
      else other.end();
    };
    client.on("close", (hadError) => closeOther(upstream, hadError));
    upstream.on("close", (hadError) => closeOther(client, hadError));
    upstream.once("connect", () => apply(pair));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    accepted: () => accepted,
    live: () => [...pairs].filter((p) => !p.holed).length,
    pause(direction = "both") {
      paused = { up: direction !== "down", down: direction !== "up" };
      for (const p of pairs) apply(p);
    },
    resume() {
      paused = { up: false, down: false };
      for (const p of pairs) apply(p);
    },
    drop() {
      for (const p of pairs) {
        p.holed = true;
        // Keep reading (and discarding) so neither end ever sees backpressure or a close.
        p.client.resume();
        p.upstream.resume();
        holes.add(p);
      }
      pairs.clear();
    },
    reset() {
      for (const p of pairs) {
        p.client.resetAndDestroy();
        p.upstream.resetAndDestroy();
      }
      pairs.clear();
    },
    refuse() {
      refusing = true;
    },
    accept() {
      refusing = false;
    },
    async close() {
      for (const p of [...pairs, ...holes]) {
        p.client.destroy();
        p.upstream.destroy();
      }
      pairs.clear();
      holes.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
