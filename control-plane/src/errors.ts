/** The control plane's error tree (extends the shared one). HTTP maps classes to status codes, never messages. */
import { HashwardError, VerificationError } from "../../shared/errors/index.js";

export { ConfigError, ConflictError, FreshnessError, HashwardError, ValidationError, VerificationError } from "../../shared/errors/index.js";

/** A named thing does not exist. HTTP 404. */
export class NotFoundError extends HashwardError {
  override name = "NotFoundError";
  constructor(
    readonly what: string,
    readonly id: string,
  ) {
    super(`${what} ${JSON.stringify(id)} not found`);
  }
}

/** A bounded resource is full (e.g. too many devices awaiting an operator). HTTP 429: retry later. */
export class CapacityError extends HashwardError {
  override name = "CapacityError";
}

/** The caller is authenticated but its role does not allow this. HTTP 403. */
export class ForbiddenError extends HashwardError {
  override name = "ForbiddenError";
}

/** Why a hello or heartbeat was not taken as a sign of life (HW-LIVE-1); the broker's metric label. */
export type LivenessRejection = "bad-signature" | "wrong-connection" | "replay" | "clock";

/**
 * A hello or heartbeat that changes nothing (no last-seen, no telemetry): its signature does not verify with the
 * device's enrolled key, it was signed for another connection, its seq is not above the last accepted one on this
 * connection, or its clock is more than 5 minutes off (HW-LIVE-1).
 */
export class LivenessRefusal extends VerificationError {
  override name = "LivenessRefusal";
  constructor(
    message: string,
    readonly reason: LivenessRejection,
  ) {
    super(message);
  }
}
