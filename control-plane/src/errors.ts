/** The control plane's error tree (extends the shared one). HTTP maps classes to status codes, never messages. */
import { HashwardError } from "../../shared/errors/index.js";

export { ConfigError, FreshnessError, HashwardError, ValidationError, VerificationError } from "../../shared/errors/index.js";

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

/** The request is valid but the current state forbids it (an illegal state transition, a used-up token). HTTP 409. */
export class ConflictError extends HashwardError {
  override name = "ConflictError";
}

/** A bounded resource is full (e.g. too many devices awaiting an operator). HTTP 429: retry later. */
export class CapacityError extends HashwardError {
  override name = "CapacityError";
}

/** The caller is authenticated but its role does not allow this. HTTP 403. */
export class ForbiddenError extends HashwardError {
  override name = "ForbiddenError";
}
