/**
 * One schema per MQTT message and per device-facing HTTP body. Everything received is parsed with these
 * before use; anything that fails is dropped, counted and logged once with the reason (see `parsePayload`, parse.ts).
 *
 * Messages with security meaning (enrollment, hello, heartbeat, evidence, event, command, ack) carry `sig`:
 * Ed25519 over the RFC 8785 form of every other field (shared/crypto `signObject`), HW-SIG-1. Everything that
 * affects a verdict or liveness is signed by the device (HW-LIVE-1, HW-EVD-1).
 */
import { z } from "zod";

export const PROTOCOL_VERSION = 1 as const;

/** Hard caps: a payload larger than this is refused by the broker before parsing. */
export const MAX_PAYLOAD_BYTES = 256 * 1024;
export const MAX_MEASUREMENTS = 4096;

const deviceId = z.string().regex(/^hw-[0-9a-f]{24}$/, "must be a Hashward device id (hw- and 24 hex digits)");
const base64url = z.string().regex(/^[A-Za-z0-9_-]+$/, "must be base64url").max(512);
const signature = z.string().regex(/^[A-Za-z0-9_-]{86}$/, "must be a base64url Ed25519 signature");
const publicKey = z.string().regex(/^[A-Za-z0-9_-]{43}$/, "must be a base64url Ed25519 public key");
const timestampMs = z.number().int().nonnegative();
const shortText = z.string().min(1).max(128);
const sha256 = z.string().regex(/^[0-9a-f]{64}$/, "must be a lowercase hex SHA-256");
/** Nesting limit of the free-form JSON fields (finding `expected`/`seen`, event `detail`, command `params`). */
export const MAX_JSON_DEPTH = 32;

/**
 * True when `value` nests arrays/objects at most `maxDepth` deep (a scalar is depth 0). Iterative, so a hostile
 * 100,000-deep value cannot overflow the stack here.
 */
export function jsonDepthWithin(value: unknown, maxDepth: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    if (depth + 1 > maxDepth) return false;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return true;
}

/**
 * HW-MSG-1 (found by fuzzing, HW-FUZZ-1): a free-form field accepted by JSON.parse may be nested so deep that
 * re-encoding it (JSON.stringify, RFC 8785 canonical form for the signature, the database's jsonb) overflows the
 * stack. Such a payload is refused here, as a ValidationError naming the field, like every other bad field.
 */
const freeJson = z.unknown().refine((v) => jsonDepthWithin(v, MAX_JSON_DEPTH), `must be JSON nested at most ${MAX_JSON_DEPTH} deep`);

export const nonceSchema = z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, "must be 16-64 base64url characters");

export const measurementSchema = z.object({
  /** Path as seen on the device (`/config/cgminer.conf`), or `@agent` for the agent's own binary. */
  path: z.string().min(1).max(1024),
  kind: z.enum(["file", "block", "missing"]),
  size: z.number().int().nonnegative(),
  /** Empty for `missing`. */
  sha256: z.union([sha256, z.literal("")]),
});
export type Measurement = z.infer<typeof measurementSchema>;

/**
 * A guard's verdict about something that is not a file digest: the live pool, the miner API's exposure, a
 * network connection, a malware indicator. Findings travel inside signed evidence so appraisal can fold them
 * into the trustworthiness vector with the exact difference (expected vs seen).
 */
export const findingSchema = z.strictObject({
  /** Which guard saw it, e.g. "pool-config", "pool-live", "api-exposure", "connection", "indicator". */
  guard: z.string().regex(/^[a-z][a-z0-9-]{1,47}$/),
  claim: z.enum(["configuration", "executables", "file-system", "runtime-opaque"]),
  tier: z.enum(["warning", "contraindicated"]),
  /** What it is about: a path, a pool URL, host:port. */
  subject: z.string().min(1).max(1024),
  expected: freeJson.optional(),
  seen: freeJson.optional(),
  message: z.string().max(1024),
});
export type Finding = z.infer<typeof findingSchema>;
export const MAX_FINDINGS = 256;

/**
 * What the guards looked at in one cycle. "Not seen is not clean" (HW-APPRAISE-3): an
 * input the agent could not read (a miner stopped by quarantine refuses its API, /proc/net/tcp is missing, no
 * signed policy yet) is reported as not observed, so the plane never reads its silence as a clean verdict
 * (HW-APPRAISE-3). Findings map to the observation that produced them with `observationForGuard`.
 *   miner-api   the live pools, hashrate and stats from the miner's API (cgminer TCP 4028)
 *   sockets     /proc/net/tcp{,6}: outbound connections and listeners
 *   config      the miner's JSON config files (pools, api-allow)
 *   indicators  the malware indicators of the signed policy
 */
export const OBSERVATIONS = ["miner-api", "sockets", "config", "indicators"] as const;
export type ObservationName = (typeof OBSERVATIONS)[number];

export const observationSchema = z.strictObject({
  observed: z.boolean(),
  /** Why not (or what was seen instead), e.g. "unreachable: connect ECONNREFUSED" or "no signed policy yet". */
  reason: z.string().max(256).optional(),
});
export type Observation = z.infer<typeof observationSchema>;

/** Every observation the agent reports; a missing key (or a missing `observations`, older agents) is "not observed". */
export const observationsSchema = z.strictObject({
  "miner-api": observationSchema.optional(),
  sockets: observationSchema.optional(),
  config: observationSchema.optional(),
  indicators: observationSchema.optional(),
});
export type Observations = z.infer<typeof observationsSchema>;

const GUARD_OBSERVATION: Record<string, ObservationName> = {
  "pool-live": "miner-api",
  "miner-api": "miner-api",
  "miner-stop": "miner-api",
  "pool-restore": "miner-api",
  connection: "sockets",
  "listening-port": "sockets",
  "pool-config": "config",
  "api-exposure": "config",
  indicator: "indicators",
};

/** The observation a guard's findings come from; null for a guard this version does not know (treat as unseen). */
export function observationForGuard(guard: string): ObservationName | null {
  return Object.hasOwn(GUARD_OBSERVATION, guard) ? GUARD_OBSERVATION[guard]! : null;
}

export const enrollmentRequestSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  type: z.literal("enroll"),
  deviceId,
  publicKey,
  model: shortText,
  firmwareVersion: shortText,
  agentVersion: shortText,
  enrollmentToken: z.string().min(1).max(256).optional(),
  /** HW-MTLS-1: SPKI PEM of the device's P-256 TLS key; the plane's CA answers with a client certificate for it. */
  tlsPublicKey: z.string().min(1).max(1024).optional(),
  ts: timestampMs,
  sig: signature,
});
export type EnrollmentRequest = z.infer<typeof enrollmentRequestSchema>;

export const enrollmentResponseSchema = z.object({
  deviceId,
  enrollment: z.enum(["pending", "accepted", "rejected", "revoked"]),
  /** The plane's command-signing public key, pinned by the agent on first enrollment. */
  commandPublicKey: publicKey,
  mqttUrl: z.string().optional(),
  /** HW-MTLS-1: PEM client certificate (CN = deviceId) issued by the plane's CA for the request's tlsPublicKey. */
  clientCertificate: z.string().max(16_384).optional(),
});
export type EnrollmentResponse = z.infer<typeof enrollmentResponseSchema>;

/**
 * The nonce of the connect token (shared/auth/connect-token.ts) that opened the MQTT connection a hello or heartbeat
 * is sent on. Tokens are single-use (HW-AUTH-1), so a signed hello/heartbeat is valid on one connection only:
 * whoever opens another session for the device (with a harvested token) cannot replay the device's messages on it
 * (HW-LIVE-1).
 */
const connectNonce = z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, "must be the connect token's nonce (16-64 base64url characters)");

/**
 * Sent once after every CONNECT (then the plane re-publishes pending commands and sends a challenge). Signed and
 * bound to the connection (`connectNonce`) because it records versions and boot id and counts as "seen" (HW-LIVE-1).
 */
export const helloSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  type: z.literal("hello"),
  deviceId,
  connectNonce,
  model: shortText,
  firmwareVersion: shortText,
  agentVersion: shortText,
  bootId: shortText,
  containment: z.enum(["none", "quarantined"]),
  lastCommandSeq: z.number().int().nonnegative(),
  ts: timestampMs,
  sig: signature,
});
export type Hello = z.infer<typeof helloSchema>;

export const telemetrySchema = z
  .object({
    hashrateGhs: z.number().nonnegative().optional(),
    hashrateAvgGhs: z.number().nonnegative().optional(),
    accepted: z.number().int().nonnegative().optional(),
    rejected: z.number().int().nonnegative().optional(),
    temperaturesC: z.array(z.number()).max(64).optional(),
    fanRpm: z.array(z.number()).max(64).optional(),
    activePool: z.string().max(512).optional(),
  })
  .strict();

/**
 * Liveness and miner telemetry, every `heartbeatIntervalMs`. The plane takes last-seen and telemetry only from a
 * heartbeat whose signature verifies with the device's enrolled key, whose `connectNonce` is the one of the
 * connection it arrived on, whose `seq` is above the last accepted on that connection and whose `ts` is within
 * 5 minutes of the plane's clock (HW-LIVE-1); anything else changes nothing and is counted.
 */
export const heartbeatSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  type: z.literal("heartbeat"),
  deviceId,
  connectNonce,
  /** Strictly increasing per device (the agent persists it in blocks, so it also grows across restarts). */
  seq: z.number().int().nonnegative(),
  /** The device's clock, ms since the epoch. */
  ts: timestampMs,
  uptimeMs: z.number().int().nonnegative(),
  containment: z.enum(["none", "quarantined"]),
  outboxDepth: z.number().int().nonnegative(),
  telemetry: telemetrySchema.optional(),
  sig: signature,
});
export type Heartbeat = z.infer<typeof heartbeatSchema>;

export const challengeSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  type: z.literal("challenge"),
  deviceId,
  nonce: nonceSchema,
  issuedAt: timestampMs,
  expiresAt: timestampMs,
});
export type Challenge = z.infer<typeof challengeSchema>;

export const evidenceSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  type: z.literal("evidence"),
  deviceId,
  /** Monotonic per device, persisted by the agent: evidence with seq <= the last accepted one is a replay. */
  seq: z.number().int().nonnegative(),
  /** The challenge nonce this answers; null for evidence sent on a timer, at start, or on a watched change. */
  nonce: nonceSchema.nullable(),
  reason: z.enum(["challenge", "timer", "watch", "startup", "guard", "update"]),
  ts: timestampMs,
  model: shortText,
  firmwareVersion: shortText,
  agentVersion: shortText,
  bootId: shortText,
  measurements: z.array(measurementSchema).max(MAX_MEASUREMENTS),
  /** Guard findings (absent or empty when every guard is satisfied). */
  findings: z.array(findingSchema).max(MAX_FINDINGS).optional(),
  /** What the guards could observe for these findings (absent from agents before it existed: nothing observed). */
  observations: observationsSchema.optional(),
  sig: signature,
});
export type Evidence = z.infer<typeof evidenceSchema>;

export const EVENT_KINDS = [
  "quarantine-enforced",
  "quarantine-lifted",
  "command-rejected",
  "watch-change",
  "outbox-overflow",
  "agent-started",
  "platform-error",
  "update-progress",
  "guard-alert",
] as const;

export const eventSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  type: z.literal("event"),
  deviceId,
  /** Unique per event (the agent's outbox file name); the plane stores each id once. */
  id: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/),
  ts: timestampMs,
  kind: z.enum(EVENT_KINDS),
  severity: z.enum(["info", "warning", "critical"]),
  detail: z.record(z.string(), freeJson),
  sig: signature,
});
export type DeviceEvent = z.infer<typeof eventSchema>;

/**
 * Every action a signed command may carry. `rotate-key` was listed here once but never implemented by either side
 * (agents acked it "unsupported"); it is removed: the device id is the hash of the enrolled key
 * (shared/crypto `deviceIdFromPublicKey`, checked at enrollment), so replacing a device key means revoking the device
 * and enrolling the new key, until a key rotation with its own rule and tests is designed.
 */
export const COMMAND_ACTIONS = ["quarantine", "release", "attest-now", "update", "set-policy"] as const;
export type CommandAction = (typeof COMMAND_ACTIONS)[number];

export const commandSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  type: z.literal("command"),
  deviceId,
  /** Strictly increasing per device; the agent refuses seq <= the last it executed (replay). */
  seq: z.number().int().positive(),
  issuedAt: timestampMs,
  expiresAt: timestampMs,
  action: z.enum(COMMAND_ACTIONS),
  params: z.record(z.string(), freeJson),
  sig: signature,
});
export type Command = z.infer<typeof commandSchema>;

export const ackSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  type: z.literal("ack"),
  deviceId,
  seq: z.number().int().positive(),
  action: z.enum(COMMAND_ACTIONS),
  status: z.enum(["done", "failed"]),
  containment: z.enum(["none", "quarantined"]),
  reason: z.string().max(1024).optional(),
  ts: timestampMs,
  sig: signature,
});
export type Ack = z.infer<typeof ackSchema>;

export const upSchemas = {
  hello: helloSchema,
  heartbeat: heartbeatSchema,
  evidence: evidenceSchema,
  event: eventSchema,
  ack: ackSchema,
} as const;

export const downSchemas = {
  challenge: challengeSchema,
  command: commandSchema,
} as const;

export { base64url as base64urlSchema, deviceId as deviceIdSchema, publicKey as publicKeySchema, sha256 as sha256Schema, signature as signatureSchema };
