import { type ChildProcess, fork } from "node:child_process";
import { createRequire } from "node:module";
import type { JsonTensor } from "../../shared/schemas/tensor.js";

/** A forked local-app process (see socket-client-process.ts) that runs timed infer blocks on request. */
export interface ClientProcess {
  run(job: {
    socketPath: string;
    model: string;
    inputs: Record<string, JsonTensor>;
    n: number;
    warmup: number;
    intervalMs?: number;
    binary?: boolean;
  }): Promise<number[]>;
  close(): void;
}

export function startClientProcess(): ClientProcess {
  const entry = new URL("./socket-client-process.ts", import.meta.url).pathname;
  const tsx = createRequire(import.meta.url).resolve("tsx");
  const child: ChildProcess = fork(entry, [], {
    execArgv: ["--import", tsx],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  let exited: string | null = null;
  const onExit = new Set<(why: string) => void>();
  child.once("exit", (code, signal) => {
    exited = `client process exited (code ${code}, signal ${signal})`;
    for (const f of onExit) f(exited);
  });
  return {
    run: (job) =>
      new Promise((resolve, reject) => {
        // A client that dies must fail the benchmark, not leave it waiting on an empty event loop.
        if (exited) return reject(new Error(exited));
        const fail = (why: string) => reject(new Error(why));
        onExit.add(fail);
        child.once("message", (m: { latencies?: number[]; error?: string }) => {
          onExit.delete(fail);
          if (m.latencies) resolve(m.latencies);
          else reject(new Error(m.error ?? "client process failed"));
        });
        child.send(job);
      }),
    close: () => {
      child.kill();
    },
  };
}
