/**
 * Which stored desired documents must be retained again (issue 14). A server used to re-publish
 * every device's document at start and after a broker reconnect: harmless for an agent (same seq,
 * ignored) but each is a delivery, and with replicas every leadership change would re-send the whole
 * fleet's documents. The broker's retained messages say what was really published: only a document
 * the broker does not hold (never published: the previous leader died between storing and
 * publishing; or lost: a broker restarted without persistence) is published again.
 */

/** `signed.seq` of a retained desired envelope, or null when the payload is not one (empty: cleared). */
export function retainedSeq(payload: Buffer): number | null {
  if (payload.length === 0) return null;
  try {
    const doc = JSON.parse(payload.toString("utf8")) as { signed?: { seq?: unknown } };
    const seq = doc?.signed?.seq;
    return typeof seq === "number" && Number.isInteger(seq) ? seq : null;
  } catch {
    return null;
  }
}

/** Devices whose stored document (by seq) is not what the broker retains. */
export function planRepublish(
  stored: readonly { deviceId: string; seq: number }[],
  retained: ReadonlyMap<string, number | null>,
): string[] {
  return stored.filter((d) => (retained.get(d.deviceId) ?? null) !== d.seq).map((d) => d.deviceId);
}
