import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";

/**
 * A fake systemd NOTIFY_SOCKET: an AF_UNIX datagram socket bound at `path` by a small Python process
 * (Node cannot bind one), which prints every datagram it receives as one JSON string per line. What
 * the agent sends is read back exactly as systemd would receive it.
 */
export interface NotifySocket {
  path: string;
  /** Datagrams received so far, in order. */
  messages: string[];
  /** Resolves with the first datagram (from `from` on) that `pred` accepts. */
  next(pred: (m: string) => boolean, from?: number, timeoutMs?: number): Promise<{ message: string; index: number }>;
  close(): Promise<void>;
}

const RECEIVER = `
import json, os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
print(json.dumps("__bound__"), flush=True)
while True:
    data = s.recv(65536)
    print(json.dumps(data.decode("utf-8", "replace")), flush=True)
`;

export async function openNotifySocket(path: string): Promise<NotifySocket> {
  const proc: ChildProcess = spawn("python3", ["-u", "-c", RECEIVER, path], { stdio: ["ignore", "pipe", "inherit"] });
  const messages: string[] = [];
  const waiters = new Set<() => void>();
  let bound: () => void = () => {};
  const isBound = new Promise<void>((resolve, reject) => {
    bound = resolve;
    proc.once("error", reject);
    proc.once("exit", (code) => reject(new Error(`notify socket receiver exited (code ${code})`)));
  });
  createInterface({ input: proc.stdout! }).on("line", (line) => {
    const m = JSON.parse(line) as string;
    if (m === "__bound__") return bound();
    messages.push(m);
    for (const w of waiters) w();
  });
  await isBound;
  return {
    path,
    messages,
    next(pred, from = 0, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const index = messages.findIndex((m, i) => i >= from && pred(m));
          if (index < 0) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve({ message: messages[index]!, index });
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching datagram on ${path}; got ${JSON.stringify(messages.slice(from))}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async close() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGKILL");
      await exited;
    },
  };
}
