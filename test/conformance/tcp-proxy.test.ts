import { type AddressInfo, createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.js";

/**
 * The flaky-network proxy itself (test/helpers/tcp-proxy.ts), against a real echo server, so the
 * broker-conformance and mqtt-link tests can trust what each fault means: paused bytes are held,
 * not lost; a dropped connection is really half-open (neither end sees a close); a reset is an
 * RST on both ends; a refused connection never reaches the target.
 */
interface End {
  socket: Socket;
  data: string;
  closed: boolean;
  error?: string;
}

function track(socket: Socket): End {
  const end: End = { socket, data: "", closed: false };
  socket.on("data", (d: Buffer) => {
    end.data += d.toString();
  });
  socket.on("error", (err: NodeJS.ErrnoException) => {
    end.error = err.code ?? err.message;
  });
  socket.on("close", () => {
    end.closed = true;
  });
  return end;
}

async function until(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("tcp proxy", () => {
  let echo: Server;
  let serverEnds: End[];
  let proxy: TcpProxy;
  const clients: Socket[] = [];

  beforeEach(async () => {
    serverEnds = [];
    echo = createServer((s) => {
      const end = track(s);
      serverEnds.push(end);
      s.on("data", (d: Buffer) => !s.destroyed && s.write(`echo:${d.toString()}`));
    });
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
    proxy = await startTcpProxy({ port: (echo.address() as AddressInfo).port });
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await proxy.close();
    await new Promise<void>((r) => echo.close(() => r()));
  });

  const dial = async (): Promise<End> => {
    const s = tcpConnect(proxy.port, "127.0.0.1");
    clients.push(s);
    const end = track(s);
    await new Promise<void>((r) => s.once("connect", () => r()));
    return end;
  };

  it("forwards both ways; pause holds the bytes and resume delivers them", async () => {
    const c = await dial();
    c.socket.write("a");
    await until("the echo", () => c.data === "echo:a");
    proxy.pause();
    c.socket.write("b");
    await new Promise((r) => setTimeout(r, 100));
    expect(serverEnds[0]?.data).toBe("a");
    proxy.resume();
    await until("the held bytes", () => c.data === "echo:aecho:b");
  });

  it("pause('down') lets the request through and holds only the answer", async () => {
    const c = await dial();
    proxy.pause("down");
    c.socket.write("x");
    await until("the request at the server", () => serverEnds[0]?.data === "x");
    await new Promise((r) => setTimeout(r, 100));
    expect(c.data).toBe("");
    proxy.resume();
    await until("the answer", () => c.data === "echo:x");
  });

  it("drop: half-open, neither end sees a close and bytes vanish; new connections work", async () => {
    const c = await dial();
    await until("the server side", () => serverEnds.length === 1);
    proxy.drop();
    c.socket.write("lost");
    serverEnds[0]?.socket.write("lost too");
    await new Promise((r) => setTimeout(r, 150));
    expect([c.closed, serverEnds[0]?.closed, c.data, serverEnds[0]?.data]).toEqual([false, false, "", ""]);
    expect(proxy.live()).toBe(0);
    const d = await dial();
    d.socket.write("y");
    await until("the echo on a new connection", () => d.data === "echo:y");
  });

  it("reset: both ends get an RST; refuse: new connections are reset before reaching the target", async () => {
    const c = await dial();
    await until("the server side", () => serverEnds.length === 1);
    proxy.reset();
    await until("both ends closed", () => c.closed && serverEnds[0]?.closed === true);
    expect([c.error, serverEnds[0]?.error]).toEqual(["ECONNRESET", "ECONNRESET"]);
    proxy.refuse();
    const s = tcpConnect(proxy.port, "127.0.0.1");
    clients.push(s);
    const r = track(s);
    await until("the refused connection closed", () => r.closed);
    expect(serverEnds).toHaveLength(1);
    proxy.accept();
    const d = await dial();
    d.socket.write("z");
    await until("the echo after accept", () => d.data === "echo:z");
  });
});
