import { afterAll, afterEach } from "vitest";
import { takeUnexpectedAgentExits } from "./agent-process.js";

/**
 * Vitest setup file (issue 20 §2): a real agent process that exits without the test asking — an
 * unhandled rejection, an uncaught exception, a crash — fails the test it happened in (or the file,
 * when it happened after the last test). Unhandled rejections in the test process itself are
 * already reported by vitest as errors that fail the run.
 */
const check = () => {
  const exits = takeUnexpectedAgentExits();
  if (exits.length > 0) throw new Error(exits.join("\n\n"));
};
afterEach(check);
afterAll(check);
