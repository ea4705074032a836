import { startClientProcess } from "./client-process.js";
import { matmulModel, startServingFixture } from "./serving-fixture.js";
import { ratio, summarize } from "./stats.js";

/**
 * Scenario "serving-shadow-latency" (issue 8): caller latency over the socket (JSON, y = x·W,
 * K = 256) with no strategy (the anchor) and with a shadow candidate at sampleRate 1 (every request
 * is re-run on the candidate after the response is sent). Runs alternate in blocks so drift in the
 * machine's load hits both sides.
 */
export async function benchServingShadow(n = 2000): Promise<Record<string, unknown>> {
  const K = 256;
  const fx = await startServingFixture();
  try {
    await fx.install("mm", "1.0.0", matmulModel(K), [1, K]);
    const cand = await fx.install("mm", "2.0.0", matmulModel(K), [1, K], { activate: false });
    const inputs = {
      x: { datatype: "FP32" as const, shape: [1, K], data: Array.from({ length: K }, (_, i) => Math.sin(i)) },
    };
    // The caller is a separate process, as a device's apps are: it must not share the agent's event loop.
    const app = startClientProcess();
    const block = (n: number, warmup: number) => app.run({ socketPath: fx.socketPath, model: "mm", inputs, n, warmup });
    const shadow = {
      mode: "shadow" as const,
      sampleRate: 1,
      candidate: { version: "2.0.0", sha256: cand.installed.sha256 },
    };
    const off: number[] = [];
    const sameNice: number[] = [];
    const niced: number[] = [];
    await block(0, 100);
    const blocks = 10;
    // Three arms in alternating blocks: no shadow; shadow host at the serving host's priority; shadow
    // host at nice 10, which is what the agent does (agent/updater/side-candidates.ts).
    for (let b = 0; b < blocks; b++) {
      fx.serving.setStrategy("mm", null);
      off.push(...(await block(n / blocks, 5)));
      fx.serving.setStrategy("mm", shadow);
      fx.runtime.setPriority(cand, 0);
      sameNice.push(...(await block(n / blocks, 5)));
      fx.runtime.setPriority(cand, 10);
      niced.push(...(await block(n / blocks, 5)));
      // Back to 0 needs privileges; without them the next block's "same priority" arm is niced too.
      if (!fx.runtime.setPriority(cand, 0)) break;
    }
    app.close();
    const figures = fx.serving.figuresFor(cand.installed.sha256);
    fx.serving.setStrategy("mm", null);
    const a = summarize(off);
    const same = summarize(sameNice);
    const f = summarize(niced);
    return {
      scenario: "serving-shadow-latency",
      model: `MatMul [1,${K}]x[${K},${K}] FP32, JSON over the socket from a separate client process`,
      anchor: { what: "no shadow", ...a },
      sameNice: { what: "shadow at sampleRate 1, candidate host at nice 0", ...same },
      figure: { what: "shadow at sampleRate 1, candidate host at nice 10 (agent default)", ...f },
      shadowCompared: figures ? (figures as unknown as { compared?: number }).compared : null,
      ratioP50: ratio(f.p50Ms, a.p50Ms),
      ratioP99: ratio(f.p99Ms, a.p99Ms),
      sameNiceRatioP50: ratio(same.p50Ms, a.p50Ms),
    };
  } finally {
    await fx.close();
  }
}
