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
  return {
    run: (job) =>
      new Promise((resolve, reject) => {
        child.once("message", (m: { latencies?: number[]; error?: string }) =>
          m.latencies ? resolve(m.latencies) : reject(new Error(m.error ?? "client process failed")),
        );
        child.send(job);
      }),
    close: () => {
      child.kill();
    },
  };
}
