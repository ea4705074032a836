import { type Logger, pino } from "pino";

export type { Logger };

export interface LoggerOptions {
  name: string;
  level?: string;
  /** Force pretty output; defaults to "stdout is a terminal". */
  pretty?: boolean;
}

/**
 * Structured JSON logs (pino); human-readable when a person is watching a terminal.
 * Level comes from LOG_LEVEL unless given.
 */
export function createLogger(opts: LoggerOptions): Logger {
  const level = opts.level ?? process.env.LOG_LEVEL ?? "info";
  const pretty = opts.pretty ?? (process.stdout.isTTY === true && process.env.LOG_FORMAT !== "json");
  if (pretty) {
    return pino({
      name: opts.name,
      level,
      transport: { target: "pino-pretty", options: { colorize: true, translateTime: "SYS:HH:MM:ss.l" } },
    });
  }
  return pino({ name: opts.name, level });
}
