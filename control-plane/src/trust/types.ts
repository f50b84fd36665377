/**
 * The states of the three trust state machines (control-plane/src/trust/index.ts holds their transition tables;
 * STATE_MACHINES.md draws them). Stored as text in the `devices` table and shown as is by the API.
 */

/** Enrollment: pending (awaiting an operator), accepted, rejected, revoked (terminal, HW-TRUST-1). */
export type EnrollmentState = "pending" | "accepted" | "rejected" | "revoked";
/** Appraisal: the device's latest verdict; `stale` = not heard from (HW-TRUST-2: unreachable is not untrusted). */
export type AppraisalState = "unknown" | "trusted" | "warning" | "contraindicated" | "stale";
/** Containment: a requested state holds until the device's signed ack (HW-TRUST-3). */
export type ContainmentState = "none" | "quarantine_requested" | "quarantined" | "release_requested";
