/**
 * Signed plane -> device commands (HW-CMD-1, HW-TRUST-3, HW-HA-4): issue (issue.ts), publish and claim for
 * re-publishing (publish.ts), pending commands and the retry schedule (pending.ts), expiry (expire.ts) and acks
 * applied in batches (ack-batch.ts). This index is what other concerns use to send commands of their own
 * (guard policy, rollouts, farm alerts): issue in their transaction, publish after it commits.
 */
export { AckBatcher } from "./ack-batch.js";
export { expireCommands } from "./expire.js";
export {
  type CommandRow,
  type ContainmentAction,
  type IssueResult,
  issueCommands,
  issueContainment,
  reassertQuarantine,
  REQUESTED_STATE,
  toCommandView,
} from "./issue.js";
export { CommandRetrySchedule, MAX_RETRY_GAP_TICKS, pendingCommands } from "./pending.js";
export { claimForRepublish, publishCommands } from "./publish.js";
