/**
 * Enrollment over HTTP: POST a signed EnrollmentRequest to
 * `<controlPlaneUrl>/api/v1/enroll`, re-posting (idempotent) every enrollPollMs while pending.
 * - accepted: pin the plane's command key if none is pinned; a DIFFERENT key than the pinned one is refused
 *   and logged critical (never replaced), and we keep polling slowly: the plane may be misconfigured, and
 *   commands signed by an unpinned key would be rejected anyway.
 * - 403 rejected: logged, polled slowly (an operator may still accept the device).
 * - 403 revoked: terminal (decommissioned) -> EnrollmentRevokedError, the CLI exits with code 3.
 * Responses are size-capped, time-limited and schema-parsed; network errors are retried.
 */
import {
  enrollmentResponseSchema,
  HashwardError,
  parseWith,
  PROTOCOL_VERSION,
  signObject,
  type EnrollmentRequest,
  type EnrollmentResponse,
} from "../../../shared/index.js";
import { isTlsVerificationError } from "../../../shared/tls/index.js";
import type { DeviceIdentity } from "../identity/index.js";
import type { Logger } from "../log/index.js";
import type { StateStore } from "../state/index.js";
import { fetchRetryingReset } from "../../../shared/http/retry.js";

export const MAX_RESPONSE_BYTES = 64 * 1024;
export const REQUEST_TIMEOUT_MS = 15_000;
/** Rejected devices and pin mismatches poll this many times slower than pending ones. */
export const SLOW_POLL_FACTOR = 12;

export class EnrollmentRevokedError extends HashwardError {
  override name = "EnrollmentRevokedError";
}

export interface EnrollDeps {
  controlPlaneUrl: string;
  identity: DeviceIdentity;
  model: string;
  firmwareVersion: string;
  agentVersion: string;
  enrollmentToken?: string | undefined;
  /** HW-MTLS-1: SPKI PEM of the device's TLS client key; the plane answers with a client certificate. */
  tlsPublicKey?: string | undefined;
  state: StateStore;
  pollMs: number;
  log: Logger;
  fetch?: typeof fetch;
  now?: () => number;
  /** Waits between polls; tests inject an immediate one. Resolves false when aborted. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<boolean>;
  signal?: AbortSignal;
}

export function buildEnrollmentRequest(deps: Pick<EnrollDeps, "identity" | "model" | "firmwareVersion" | "agentVersion" | "enrollmentToken" | "tlsPublicKey">, nowMs: number): EnrollmentRequest {
  return signObject(
    {
      v: PROTOCOL_VERSION,
      type: "enroll" as const,
      deviceId: deps.identity.deviceId,
      publicKey: deps.identity.publicKey,
      model: deps.model,
      firmwareVersion: deps.firmwareVersion,
      agentVersion: deps.agentVersion,
      ...(deps.enrollmentToken ? { enrollmentToken: deps.enrollmentToken } : {}),
      ...(deps.tlsPublicKey ? { tlsPublicKey: deps.tlsPublicKey } : {}),
      ts: nowMs,
    },
    deps.identity.keyPair.privateKey,
  );
}

export type EnrollAttempt =
  | { outcome: "response"; status: number; response: EnrollmentResponse }
  | { outcome: "error"; reason: string; identityRefused?: boolean };

/** One POST. Never throws for network/HTTP/parse problems: they become `{outcome: "error"}`. */
export async function postEnrollment(deps: EnrollDeps): Promise<EnrollAttempt> {
  const url = new URL("/api/v1/enroll", deps.controlPlaneUrl).toString();
  const body = JSON.stringify(buildEnrollmentRequest(deps, (deps.now ?? Date.now)()));
  const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
  const signal = deps.signal ? AbortSignal.any([deps.signal, timeout]) : timeout;
  try {
    // HW-HTTP-4: enrollment is idempotent (agents poll by re-posting): one retry on a reused connection's reset.
    const res = await fetchRetryingReset(deps.fetch ?? fetch, url, { method: "POST", headers: { "content-type": "application/json" }, body, signal }, { idempotent: true });
    const text = await readCapped(res, MAX_RESPONSE_BYTES);
    if (res.status !== 200 && res.status !== 403) return { outcome: "error", reason: `HTTP ${res.status}: ${text.slice(0, 200)}` };
    const response = parseWith(enrollmentResponseSchema, JSON.parse(text), "enrollment response");
    if (response.deviceId !== deps.identity.deviceId) {
      return { outcome: "error", reason: `response is for ${response.deviceId}, not ${deps.identity.deviceId}` };
    }
    return { outcome: "response", status: res.status, response };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return isTlsVerificationError(error) ? { outcome: "error", reason, identityRefused: true } : { outcome: "error", reason };
  }
}

async function readCapped(res: Response, maxBytes: number): Promise<string> {
  const declared = Number(res.headers.get("content-length") ?? "0");
  if (declared > maxBytes) throw new Error(`response of ${declared} bytes exceeds ${maxBytes}`);
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      throw new Error(`response exceeds ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function defaultSleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export interface EnrollOptions {
  /**
   * Already accepted earlier: one attempt only; if the plane is unreachable, go on with what is stored
   * (the broker still refuses a device that is no longer accepted).
   */
  alreadyAccepted?: boolean;
}

/**
 * Runs enrollment until accepted (returns the response, or null when aborted or when `alreadyAccepted`
 * and the plane could not be reached). Throws EnrollmentRevokedError when the device is revoked.
 */
export async function enroll(deps: EnrollDeps, opts: EnrollOptions = {}): Promise<EnrollmentResponse | null> {
  const sleep = deps.sleep ?? defaultSleep;
  const log = deps.log;
  let loggedStatus = "";
  for (;;) {
    if (deps.signal?.aborted) return null;
    const attempt = await postEnrollment(deps);
    let waitMs = deps.pollMs;
    if (attempt.outcome === "error") {
      if (attempt.identityRefused) {
        // HW-PIN-2: TLS failed before the request was sent; the server got nothing.
        log.error({ address: deps.controlPlaneUrl, reason: attempt.reason }, "control plane did not prove the pinned identity (TLS); enrollment not sent");
      } else {
        log.warn({ reason: attempt.reason }, "enrollment request failed; retrying");
      }
      if (opts.alreadyAccepted) return null;
    } else {
      const { response } = attempt;
      if (response.enrollment !== loggedStatus) log.info({ enrollment: response.enrollment, deviceId: response.deviceId }, "enrollment status");
      loggedStatus = response.enrollment;
      switch (response.enrollment) {
        case "revoked":
          throw new EnrollmentRevokedError(`device ${response.deviceId} is revoked (decommissioned) by the control plane`);
        case "rejected":
          waitMs = deps.pollMs * SLOW_POLL_FACTOR;
          break;
        case "pending":
          deps.state.recordEnrollment("pending", response.mqttUrl);
          break;
        case "accepted":
          try {
            // HW-PIN-1: pinned once, never replaced by a later message.
            deps.state.pinCommandKey(response.commandPublicKey);
          } catch (error) {
            log.fatal({ offered: response.commandPublicKey, pinned: deps.state.commandPublicKey, err: String(error) }, "CRITICAL: control plane offered a different command key than the pinned one; refusing");
            waitMs = deps.pollMs * SLOW_POLL_FACTOR;
            break;
          }
          deps.state.recordEnrollment("accepted", response.mqttUrl);
          return response;
      }
    }
    if (!(await sleep(waitMs, deps.signal))) return null;
  }
}
