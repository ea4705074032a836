/**
 * How a rollout step works through thousands of actions without holding the server (issue 14).
 *
 * - `pace()`: an all-at-once stage over 10,000 devices is 10,000 assignments, and an in-process
 *   broker's publish resolves without a turn of the event loop; awaiting `pace()` gives I/O (the
 *   API, device messages) a turn every `sliceMs`.
 * - `add(p)`: publishes overlap, `window` of them at a time (one PUBACK round trip per device in
 *   turn made a 10,000-device stage on an external Mosquitto take minutes). A failed publish does
 *   not stop the others; `drain()` waits for all and rethrows the first failure.
 */
export function createPacedPublisher(opts: { sliceMs: number; window: number }) {
  let slice = performance.now();
  const inFlight: Promise<void>[] = [];
  const errors: unknown[] = [];
  const settleAll = () => Promise.all(inFlight.splice(0));
  return {
    async pace(): Promise<void> {
      if (performance.now() - slice <= opts.sliceMs) return;
      await new Promise((r) => setImmediate(r));
      slice = performance.now();
    },
    async add(p: Promise<void>): Promise<void> {
      inFlight.push(p.catch((err: unknown) => void errors.push(err)));
      if (inFlight.length >= opts.window) await settleAll();
    },
    /** Waits for every publish so far, without failing: before work that must follow them. */
    settle: async (): Promise<void> => {
      await settleAll();
    },
    async drain(): Promise<void> {
      await settleAll();
      // The first failed publish fails the step (as before): the next tick plans again.
      if (errors.length > 0) throw errors[0];
    },
  };
}
