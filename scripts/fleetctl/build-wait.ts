import { setTimeout as sleep } from "node:timers/promises";
import type { ErrorCode } from "../../shared/errors.js";
import { httpStatusFor } from "../../shared/http-status.js";
import { type ApiClient, ApiError, type VersionView } from "./api-client.js";
import { createPhaseProgress } from "./progress.js";

/** How often `models push` polls its build. */
export const BUILD_POLL_MS = 300;

/**
 * Polls a model build until it ends, showing its phases on stderr; returns the build's result
 * (what the synchronous `POST /v1/models` answers) or throws its error as an ApiError.
 */
export async function waitForBuild(
  api: ApiClient,
  started: { buildId: string },
  pollMs = BUILD_POLL_MS,
): Promise<VersionView> {
  const progress = createPhaseProgress();
  for (;;) {
    const build = await api.getModelBuild(started.buildId);
    progress.show(build.phases);
    if (build.status === "succeeded") {
      if (build.result) return build.result;
      throw new ApiError(0, "BAD_RESPONSE", `build ${build.id} succeeded without a result`);
    }
    if (build.status === "failed") {
      progress.done(`build ${build.id} failed${build.phase ? ` while ${build.phase}` : ""}`);
      const code = build.error?.code ?? "INTERNAL";
      throw new ApiError(httpStatusFor(code as ErrorCode), code, build.error?.message ?? "model build failed");
    }
    await sleep(pollMs);
  }
}
