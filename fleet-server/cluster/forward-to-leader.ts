import type { FastifyReply, FastifyRequest } from "fastify";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";

/** Marks a request one replica forwarded to another; a forwarded request is never forwarded again. */
export const FORWARDED_BY_HEADER = "x-edgefleet-forwarded-by";

export interface LeaderView {
  isLeader(): boolean;
  /** The leader's advertised API base URL (null: unknown, or this replica leads). */
  leaderUrl(): string | null;
}

/**
 * Rollout commands run where the rollout executor runs (issue 14, replicas): the executor
 * serializes its steps with the commands on one in-process chain, and only the leader has one.
 * A standby passes the request on to the leader with the caller's own credentials, so the leader
 * authorizes and audits it as the caller; the answer goes back unchanged.
 */
export function createLeaderForwarder(deps: { log: Logger; replicaId: string; leader: LeaderView }) {
  const { log, replicaId, leader } = deps;
  return {
    /** Null: handle here (this replica leads). Otherwise the reply, already sent with the leader's answer. */
    async forward(req: FastifyRequest, reply: FastifyReply, body: unknown): Promise<FastifyReply | null> {
      if (leader.isLeader()) return null;
      const url = leader.leaderUrl();
      if (url === null || req.headers[FORWARDED_BY_HEADER] !== undefined) {
        void reply.header("retry-after", "3");
        throw new EdgeFleetError(
          "NO_LEADER",
          url === null
            ? "no fleet-server replica holds the rollouts lease right now; retry in a few seconds"
            : "this replica no longer leads rollouts; retry",
        );
      }
      const headers: Record<string, string> = { [FORWARDED_BY_HEADER]: replicaId };
      if (req.headers.authorization) headers.authorization = req.headers.authorization;
      // The body was parsed (JSON or YAML) and checked against the contract here; the leader checks
      // it again. JSON is the one format every route accepts.
      if (body !== undefined) headers["content-type"] = "application/json";
      let res: Response;
      try {
        res = await fetch(new URL(req.url, url), {
          method: req.method,
          headers,
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          signal: AbortSignal.timeout(30_000),
        });
      } catch (err) {
        log.warn({ err, leader: url, url: req.url }, "forwarding a rollout command to the leader failed");
        void reply.header("retry-after", "3");
        throw new EdgeFleetError("NO_LEADER", `the leader at ${url} did not answer; retry`);
      }
      const text = await res.text();
      void reply.status(res.status).header("content-type", res.headers.get("content-type") ?? "application/json");
      const retryAfter = res.headers.get("retry-after");
      if (retryAfter) void reply.header("retry-after", retryAfter);
      return reply.send(text);
    },
  };
}
export type LeaderForwarder = ReturnType<typeof createLeaderForwarder>;
