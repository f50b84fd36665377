/**
 * pino JSON logs to stdout. No transports or worker threads: they do not survive `bun build --compile`
 * and a miner controller has no use for them (a log shipper reads stdout).
 */
import { pino, type Logger } from "pino";

export type { Logger };
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function createLogger(level: LogLevel = "info", bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { app: "hashward-agent", ...bindings }, timestamp: pino.stdTimeFunctions.isoTime });
}

/** A logger that drops everything, for tests. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}

/**
 * Logs a given reason once (then only counts it), so a flood of bad input cannot flood the log.
 * Rule: anything dropped is counted and logged once with the reason.
 */
export class OnceLogger {
  private readonly seen = new Map<string, number>();
  constructor(
    private readonly log: Logger,
    private readonly maxReasons = 1000,
  ) {}

  warn(reason: string, fields: Record<string, unknown> = {}): void {
    const count = (this.seen.get(reason) ?? 0) + 1;
    if (count === 1 && this.seen.size >= this.maxReasons) return;
    this.seen.set(reason, count);
    if (count === 1) this.log.warn({ ...fields, reason }, "dropped input (logged once per reason)");
  }

  counts(): Record<string, number> {
    return Object.fromEntries(this.seen);
  }
}
