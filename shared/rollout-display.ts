/**
 * How the operator's view shows a rollout's devices (`GET /v1/rollouts/{id}`), in display order.
 * One list for the fleet server's view and fleetctl's output, so a state added on one side is not
 * silently missing on the other.
 */
export const DISPLAY_STATES = [
  "pending",
  "downloading",
  "installing",
  "probation",
  "committed",
  "failed",
  "reverted",
] as const;

/** What an operator sees per device: the agent's update state, collapsed for display. */
export type DisplayState = (typeof DISPLAY_STATES)[number];

/**
 * A member's state in the view: what the device reports about the rollout's bundle, or `removed`
 * once the rollout took its assignment off the device (a side removed by abort or rollback, or a
 * first version's assignment removed by rollback) and the device no longer reports the bundle.
 */
export type MemberState = DisplayState | "removed";

export type DisplayCounts = Record<MemberState, number> & { total: number };

/** Every count at 0. */
export function emptyDisplayCounts(): DisplayCounts {
  const counts = { total: 0, removed: 0 } as DisplayCounts;
  for (const s of DISPLAY_STATES) counts[s] = 0;
  return counts;
}
