/**
 * One small error tree for code shared by the agent and the control plane.
 * Callers branch on the class (`instanceof`), never on message text. Messages name the offending value.
 */
export class HashwardError extends Error {
  override name = "HashwardError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A payload, file or option did not match its schema. `field` is the dotted path of the first bad field. */
export class ValidationError extends HashwardError {
  override name = "ValidationError";
  constructor(
    message: string,
    readonly field: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A signature, token or proof did not verify. Any exception inside a crypto step becomes this (fail closed). */
export class VerificationError extends HashwardError {
  override name = "VerificationError";
}

/** A signed message was valid once but is no longer acceptable: expired, replayed, or out of sequence. */
export class FreshnessError extends VerificationError {
  override name = "FreshnessError";
}

/**
 * The request is valid but the current state forbids it (an illegal state transition, a used-up token). HTTP 409
 * on the plane. Shared because the state machine helper (shared/machine) throws its subclass on both sides.
 */
export class ConflictError extends HashwardError {
  override name = "ConflictError";
}

/** A configuration option is invalid. `option` names it (e.g. `HASHWARD_HTTP_PORT` or `heartbeatIntervalMs`). */
export class ConfigError extends HashwardError {
  override name = "ConfigError";
  constructor(
    message: string,
    readonly option: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
