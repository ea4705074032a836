/**
 * Pure: one line of `fleetctl devices list`. Presence `unknown` (the server has no broker link, or
 * has not heard the device since it lost one; issue 20 §4) says since when and what was last known,
 * so nobody reads a stale `online` as the truth.
 */
export function formatDeviceLine(d: Record<string, unknown>): string {
  const models = ((d.models ?? []) as { model: string; state: string; committedVersion: string | null }[])
    .map((m) => `${m.model}@${m.committedVersion ?? "-"} ${m.state}`)
    .join(", ");
  const presence = String(d.presence ?? "unknown");
  const since =
    presence === "unknown" && typeof d.presenceSince === "string"
      ? ` since ${d.presenceSince} (last known ${String(d.lastKnownPresence ?? "-")})`
      : "";
  return `${String(d.id).padEnd(24)} ${`${presence}${since}`.padEnd(8)} ${String(d.profile ?? "").padEnd(16)} ${models}`;
}
