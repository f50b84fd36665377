import { verifySignedObject, type Verifier, verifyBytes } from "../crypto/index.js";
import { FreshnessError, VerificationError } from "../errors/index.js";
import { CLOCK_SKEW_MS } from "../auth/connect-token.js";
import type { Command } from "./schemas.js";

export interface CommandCheck {
  /** The id of the device doing the check. */
  deviceId: string;
  /** Highest command seq this device has already executed (persisted). */
  lastSeq: number;
  nowMs: number;
}

/**
 * The agent's acceptance rule for a plane command (rule HW-CMD-1), in this order:
 * signature by the pinned plane key, addressed to this device, not expired, seq above the last executed.
 * Throws VerificationError / FreshnessError; the caller changes nothing on any throw.
 */
export function verifyCommand(command: Command, planePublicKey: Uint8Array, check: CommandCheck, verifier: Verifier = verifyBytes): void {
  verifySignedObject(command, planePublicKey, verifier);
  if (command.deviceId !== check.deviceId) {
    throw new VerificationError(`command ${command.seq} is addressed to ${command.deviceId}, not ${check.deviceId}`);
  }
  if (command.expiresAt <= check.nowMs) {
    throw new FreshnessError(`command ${command.seq} expired at ${command.expiresAt} (now ${check.nowMs})`);
  }
  if (command.issuedAt > check.nowMs + CLOCK_SKEW_MS) {
    throw new FreshnessError(`command ${command.seq} issued in the future at ${command.issuedAt}`);
  }
  if (command.seq <= check.lastSeq) {
    throw new FreshnessError(`command seq ${command.seq} is not above the last executed ${check.lastSeq} (replay)`);
  }
}
