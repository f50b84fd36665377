/**
 * Several plane processes on one PostgreSQL (docs/scale.md "Replicas"): keys and the bootstrap admin token made
 * once and shared (secrets.ts; HW-HA-1, HW-HA-2), fleet-wide timers on one leader at a time (lease.ts; HW-HA-3).
 * Per-row work that every replica runs (command re-publish, expiry, webhook delivery) is claimed atomically in SQL
 * where it is done (service/commands/publish.ts claimForRepublish, webhooks; HW-HA-4).
 */
export { createSharedSecrets, readSecretsKey, SECRETS_KEY_OPTION, type SecretSource, type SharedSecret, type SharedSecretName, type SharedSecrets } from "./secrets.js";
export { soleLeader, startLeaderLease, TIMERS_LEASE, type Leadership } from "./lease.js";
