/** The miner API client's error tree (HW-MINER-1): callers branch on the class, never on the message. */
import { HashwardError } from "../../../shared/index.js";

export class MinerApiError extends HashwardError {
  override name = "MinerApiError";
  /** Stable short kind, used as the finding's `seen` so one failure mode is reported once. */
  readonly kind: string = "error";
}
/** Connection refused, reset or closed before any answer. */
export class MinerApiUnreachableError extends MinerApiError {
  override name = "MinerApiUnreachableError";
  override readonly kind = "unreachable";
}
export class MinerApiTimeoutError extends MinerApiError {
  override name = "MinerApiTimeoutError";
  override readonly kind = "timeout";
}
export class MinerApiOversizedError extends MinerApiError {
  override name = "MinerApiOversizedError";
  override readonly kind = "oversized";
}
/** Not JSON, or JSON without the fields we use (names the first bad field). */
export class MinerApiMalformedError extends MinerApiError {
  override name = "MinerApiMalformedError";
  override readonly kind = "malformed";
}
/** A well-formed answer with STATUS "E"/"F" (e.g. "Cannot remove active pool"). */
export class MinerApiCommandError extends MinerApiError {
  override name = "MinerApiCommandError";
  override readonly kind = "refused";
  constructor(
    message: string,
    readonly code: number | undefined,
  ) {
    super(message);
  }
}
