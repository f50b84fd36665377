/**
 * Request and response schemas of the operator API. Requests are validated with these before anything else runs
 * (HW-HTTP-2); responses are described for the OpenAPI document only (the service owns their shape, see
 * control-plane/src/service/types.ts, exported by its index.ts).
 */
import { z } from "@hono/zod-openapi";
import {
  MAX_MEASUREMENTS,
  deviceIdSchema,
  enrollmentRequestSchema,
  enrollmentResponseSchema,
  publicKeySchema,
  referenceMeasurementSchema as wireReferenceMeasurementSchema,
  RELEASE_CLAIMS,
} from "../../../shared/protocol/index.js";

const HOUR_MS = 60 * 60 * 1000;
export const DEFAULT_ENROLLMENT_TOKEN_TTL_MS = 24 * HOUR_MS;
export const MAX_ENROLLMENT_TOKEN_TTL_MS = 30 * 24 * HOUR_MS;
export const MAX_ENROLLMENT_TOKEN_USES = 100_000;
export const MAX_BULK_DEVICES = 10_000;
export const DEFAULT_PAGE_LIMIT = 100;
export const MAX_PAGE_LIMIT = 1000;

const roleSchema = z.enum(["viewer", "operator", "admin"]);
const enrollmentStateSchema = z.enum(["pending", "accepted", "rejected", "revoked"]);
const appraisalStateSchema = z.enum(["unknown", "trusted", "warning", "contraindicated", "stale"]);
const containmentStateSchema = z.enum(["none", "quarantine_requested", "quarantined", "release_requested"]);
const tierSchema = z.enum(["none", "affirming", "warning", "contraindicated"]);
const measuredClaimSchema = z.enum(RELEASE_CLAIMS);
const label = z.string().min(1).max(128);
const reason = z.string().min(1).max(1024);
const isoTime = z.string().openapi({ format: "date-time" });

// Shared protocol schemas may be built before @hono/zod-openapi extends zod (import order is the caller's), so
// `.openapi()` is only ever called on schemas made here, wrapping the shared ones.
export const deviceIdParam = z.string().pipe(deviceIdSchema).openapi({ param: { name: "deviceId", in: "path" }, example: "hw-0123456789abcdef01234567" });

// ---------------------------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------------------------

export const deviceParams = z.object({ deviceId: deviceIdParam });
export const referenceIdParams = z.object({
  id: z
    .string()
    .min(1)
    .max(128)
    .openapi({ param: { name: "id", in: "path" } }),
});

// Query strings arrive as text; coercion turns "abc" into NaN, which then fails `int()` and names the field.
const limitQuery = z.coerce.number().int().min(1).max(MAX_PAGE_LIMIT).default(DEFAULT_PAGE_LIMIT);
const offsetQuery = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0);

export const limitOnlyQuery = z.object({ limit: limitQuery });
export const pageQuery = z.object({ limit: limitQuery, offset: offsetQuery });
export const deviceListQuery = z.object({
  enrollment: enrollmentStateSchema.optional(),
  appraisal: appraisalStateSchema.optional(),
  containment: containmentStateSchema.optional(),
  model: label.optional(),
  search: z.string().min(1).max(128).optional().openapi({ description: "Text in the device id, model, firmware version or active pool (case-insensitive)" }),
  limit: limitQuery,
  offset: offsetQuery,
});
export const referenceListQuery = z.object({ model: label.optional(), firmwareVersion: label.optional() });

// Strict bodies: an unknown key is more likely a typo ("reasn") than something to ignore silently.
export const enrollBody = z.strictObject(enrollmentRequestSchema.shape).openapi("EnrollmentRequest");
export const enrollmentTokenBody = z
  .strictObject({
    ttlMs: z.number().int().min(1000).max(MAX_ENROLLMENT_TOKEN_TTL_MS).default(DEFAULT_ENROLLMENT_TOKEN_TTL_MS),
    maxUses: z.number().int().min(1).max(MAX_ENROLLMENT_TOKEN_USES).default(1),
    label: label.optional(),
  })
  .openapi("EnrollmentTokenRequest");
/** Longest API token lifetime, in ms (HW-TOKEN-1): about 10 years; leave ttlMs out for a token without expiry. */
export const MAX_API_TOKEN_TTL_MS = 3650 * 24 * HOUR_MS;
export const apiTokenBody = z
  .strictObject({
    role: roleSchema,
    label,
    ttlMs: z.number().int().min(1000).max(MAX_API_TOKEN_TTL_MS).optional().openapi({ description: "Lifetime in milliseconds; absent = no expiry" }),
  })
  .openapi("ApiTokenRequest");
export const tokenIdParams = z.object({
  id: z
    .string()
    .regex(/^(tok|enr)_[0-9a-f]{1,64}$/, "must be a token id such as tok_... or enr_...")
    .openapi({ param: { name: "id", in: "path" } }),
});
export const preauthorizeBody = z.strictObject({ publicKey: publicKeySchema, model: label }).openapi("PreauthorizeRequest");
export const optionalReasonBody = z.strictObject({ reason: reason.optional() }).openapi("OptionalReason");
export const reasonBody = z.strictObject({ reason }).openapi("Reason");
export const bulkContainmentBody = z
  .strictObject({ deviceIds: z.array(deviceIdSchema).min(1).max(MAX_BULK_DEVICES), reason })
  .openapi("BulkContainmentRequest");
// The wire definition (shared/protocol/release.ts), strict here: an unknown key in operator input is a typo.
export const referenceMeasurementSchema = z.strictObject(wireReferenceMeasurementSchema.shape).openapi("ReferenceMeasurement");
/** A stored reference measurement (responses): the wire definition without the input-only `kind`. */
export const storedMeasurementSchema = z.object(wireReferenceMeasurementSchema.shape).omit({ kind: true });
export const registerReferenceBody = z
  .strictObject({
    model: label,
    firmwareVersion: label,
    measurements: z.array(referenceMeasurementSchema).min(1).max(MAX_MEASUREMENTS),
  })
  .openapi("RegisterReferenceValuesRequest");
export const captureReferenceBody = z.strictObject({ deviceId: deviceIdSchema }).openapi("CaptureReferenceValuesRequest");

// ---------------------------------------------------------------------------------------------------------------
// Responses (documentation)
// ---------------------------------------------------------------------------------------------------------------

export const errorSchema = z
  .object({
    error: z.object({
      code: z.enum([
        "validation_error",
        "verification_failed",
        "unauthorized",
        "forbidden",
        "not_found",
        "conflict",
        "payload_too_large",
        "too_many_requests",
        "request_timeout",
        "unavailable",
        "internal",
      ]),
      message: z.string(),
      field: z.string().optional(),
    }),
  })
  .openapi("Error");

export const enrollmentResponse = z.object(enrollmentResponseSchema.shape).openapi("EnrollmentResponse");

const actorSchema = z
  .object({ kind: z.enum(["operator", "system", "device"]), id: z.string(), role: roleSchema.optional() })
  .openapi("Actor");

const differenceSchema = z.object({
  path: z.string(),
  claim: measuredClaimSchema,
  kind: z.enum(["changed", "missing", "unexpected"]),
  expected: z.object({ sha256: z.string(), size: z.number() }).nullable(),
  seen: z.object({ sha256: z.string(), size: z.number() }).nullable(),
});

const attestationResultSchema = z
  .object({
    status: tierSchema,
    trustworthiness: z.object({
      "instance-identity": tierSchema,
      configuration: tierSchema,
      executables: tierSchema,
      "file-system": tierSchema,
      /** Present only when a guard finding names it (HW-APPRAISE-2). */
      "runtime-opaque": tierSchema.optional(),
    }),
    differences: z.array(differenceSchema),
    /** Guard findings of the evidence (control-plane/src/appraisal, HW-APPRAISE-2); absent in results stored before guards. */
    findings: z
      .array(
        z.object({
          guard: z.string(),
          claim: z.enum(["configuration", "executables", "file-system", "runtime-opaque"]),
          tier: z.enum(["warning", "contraindicated"]),
          subject: z.string(),
          expected: z.unknown().optional(),
          seen: z.unknown().optional(),
          message: z.string(),
        }),
      )
      .optional(),
    referenceId: z.string().nullable(),
    evidenceSeq: z.number(),
    appraisedAt: isoTime,
    summary: z.string(),
    /** HW-APPRAISE-3: appraised under containment with inputs not observed; `held` findings of the previous verdict. */
    underContainment: z
      .object({
        containment: z.enum(["none", "quarantine_requested", "quarantined", "release_requested"]),
        notObserved: z.array(z.object({ observation: z.string(), reason: z.string().optional() })),
        held: z.array(z.object({ guard: z.string(), subject: z.string(), tier: z.string() }).passthrough()),
      })
      .optional(),
    /** HW-ALERT-2: present while farm alerts (findings of guard `farm-alert`) are folded in; `base` is the verdict without them. */
    farmAlerts: z.object({ base: z.object({ status: tierSchema, trustworthiness: z.record(z.string(), tierSchema), summary: z.string() }) }).optional(),
  })
  .openapi("AttestationResult");

export const deviceViewSchema = z
  .object({
    deviceId: z.string(),
    publicKey: z.string(),
    model: z.string(),
    firmwareVersion: z.string(),
    agentVersion: z.string(),
    enrollment: enrollmentStateSchema,
    appraisal: appraisalStateSchema,
    containment: containmentStateSchema,
    connected: z.boolean(),
    lastSeenAt: isoTime.nullable(),
    lastAppraisal: attestationResultSchema.nullable(),
    telemetry: z
      .object({
        hashrateGhs: z.number().optional(),
        hashrateAvgGhs: z.number().optional(),
        accepted: z.number().optional(),
        rejected: z.number().optional(),
        temperaturesC: z.array(z.number()).optional(),
        fanRpm: z.array(z.number()).optional(),
        activePool: z.string().optional(),
      })
      .nullable(),
    createdAt: isoTime,
    updatedAt: isoTime,
  })
  .openapi("Device");

export const transitionSchema = z
  .object({
    id: z.string(),
    deviceId: z.string(),
    machine: z.enum(["enrollment", "appraisal", "containment"]),
    from: z.string(),
    to: z.string(),
    reason: z.string(),
    actor: actorSchema,
    evidence: z.unknown(),
    at: isoTime,
  })
  .openapi("Transition");

export const commandViewSchema = z
  .object({
    deviceId: z.string(),
    seq: z.number(),
    action: z.string(),
    params: z.record(z.string(), z.unknown()),
    status: z.enum(["pending", "acked", "failed", "expired", "superseded"]),
    issuedAt: isoTime,
    expiresAt: isoTime,
    ackedAt: isoTime.nullable(),
    reason: z.string().nullable(),
  })
  .openapi("Command");

export const referenceValueSetSchema = z
  .object({
    id: z.string(),
    model: z.string(),
    firmwareVersion: z.string(),
    status: z.enum(["proposed", "approved", "superseded"]),
    source: z.enum(["registered", "captured", "release"]),
    capturedFrom: z.string().nullable(),
    measurements: z.array(storedMeasurementSchema),
    createdAt: isoTime,
    approvedAt: isoTime.nullable(),
    approvedBy: z.string().nullable(),
  })
  .openapi("ReferenceValueSet");

export const eventViewSchema = z
  .object({
    id: z.string(),
    deviceId: z.string(),
    kind: z.string(),
    severity: z.enum(["info", "warning", "critical"]),
    detail: z.record(z.string(), z.unknown()),
    ts: isoTime,
    receivedAt: isoTime,
  })
  .openapi("DeviceEvent");

export const auditEntrySchema = z
  .object({ id: z.string(), at: isoTime, actor: actorSchema, action: z.string(), target: z.string().nullable(), detail: z.unknown() })
  .openapi("AuditEntry");

export const enrollmentTokenCreatedSchema = z
  .object({
    id: z.string(),
    token: z.string(),
    expiresAt: isoTime,
    maxUses: z.number(),
    caCertHash: z.string().nullable().optional().openapi({
      description: "HW-PIN-2: sha256 of the plane CA's SubjectPublicKeyInfo; give it to the agent with the token (config `caCertHash`), as kubeadm's discovery-token-ca-cert-hash",
    }),
  })
  .openapi("EnrollmentTokenCreated");

export const apiTokenCreatedSchema = z
  .object({ id: z.string(), token: z.string(), role: roleSchema, label: z.string(), expiresAt: isoTime.nullable() })
  .openapi("ApiTokenCreated");
/** HW-TOKEN-1: listed tokens carry no secret and no hash. */
export const apiTokenViewSchema = z
  .object({
    id: z.string(),
    role: roleSchema,
    label: z.string(),
    createdAt: isoTime,
    createdBy: actorSchema,
    expiresAt: isoTime.nullable(),
    lastUsedAt: isoTime.nullable(),
    revokedAt: isoTime.nullable(),
    status: z.enum(["active", "expired", "revoked"]),
  })
  .openapi("ApiToken");
export const apiTokensSchema = z.object({ tokens: z.array(apiTokenViewSchema) }).openapi("ApiTokens");
export const enrollmentTokenViewSchema = z
  .object({
    id: z.string(),
    label: z.string().nullable(),
    createdAt: isoTime,
    createdBy: actorSchema,
    expiresAt: isoTime,
    maxUses: z.number().int(),
    uses: z.number().int(),
    lastUsedAt: isoTime.nullable(),
    revokedAt: isoTime.nullable(),
    status: z.enum(["active", "expired", "used-up", "revoked"]),
  })
  .openapi("EnrollmentToken");
export const enrollmentTokensSchema = z.object({ tokens: z.array(enrollmentTokenViewSchema) }).openapi("EnrollmentTokens");

export const attestNowSchema = z.object({ nonce: z.string(), expiresAt: isoTime }).openapi("AttestNow");
export const commandsSchema = z.object({ commands: z.array(commandViewSchema) }).openapi("Commands");
export const devicesSchema = z.object({ devices: z.array(deviceViewSchema) }).openapi("Devices");
export const transitionsSchema = z.object({ transitions: z.array(transitionSchema) }).openapi("Transitions");
export const referenceValuesSchema = z.object({ referenceValues: z.array(referenceValueSetSchema) }).openapi("ReferenceValues");
export const eventsSchema = z.object({ events: z.array(eventViewSchema) }).openapi("Events");
export const auditSchema = z.object({ entries: z.array(auditEntrySchema) }).openapi("AuditEntries");
/** `status` is "degraded" while the database does not answer (`database: "down"`, HW-FAULT-3). */
export const healthSchema = z
  .object({ status: z.enum(["ok", "degraded"]), version: z.string(), database: z.enum(["up", "down"]) })
  .openapi("Health");
