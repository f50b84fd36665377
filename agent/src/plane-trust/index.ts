/**
 * Authenticating the control plane before the agent sends it anything (HW-PIN-2, HW-TLS-1).
 *
 * The trust anchor for HTTPS (enrollment, TUF) and MQTT over TLS is ONE CA certificate, found in this order:
 *  1. `caFile` (provisioned with the board);
 *  2. `<stateDir>/plane-ca.pem`, stored by an earlier successful pin;
 *  3. `caCertHash` (given with the enrollment token, kubeadm's discovery-token-ca-cert-hash model): the CA is
 *     read from `<controlPlaneUrl>/ca.pem` WITHOUT verification, and kept only if the sha256 of its
 *     SubjectPublicKeyInfo equals the pin and it is a self-signed CA. Nothing else is sent to that server before;
 *  4. `trustOnFirstUse: true`: the same download, kept unchecked; an explicit opt-in, logged at warn.
 * Then every request verifies the chain to that CA and the host name as usual, so a server that cannot prove
 * the pinned identity gets no enrollment request and no connect token.
 *
 * Plaintext (`http://` plane or `mqtt://` broker) is refused unless `allowPlaintext: true` (logged at warn).
 */
import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, HashwardError } from "../../../shared/index.js";
import { writeFileAtomicSync } from "../../../shared/fs/atomic.js";
import { caCertHash, httpsFetch, isSelfSignedCa, isTlsVerificationError } from "../../../shared/tls/index.js";
import type { AgentConfig } from "../config/index.js";
import type { Logger } from "../log/index.js";

export const PLANE_CA_FILE = "plane-ca.pem";
/** A CA certificate is small; anything bigger is not one. */
const MAX_CA_BYTES = 64 * 1024;
const CA_TIMEOUT_MS = 15_000;

/** The server at `address` did not prove the pinned identity (wrong CA key, failed TLS verification). */
export class PlaneIdentityError extends HashwardError {
  override name = "PlaneIdentityError";
  constructor(
    message: string,
    readonly address: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type TrustSource = "provisioned" | "stored" | "pin" | "trust-on-first-use" | "plaintext";

export interface PlaneTrust {
  source: TrustSource;
  /** PEM of the only CA trusted for the plane; null for plaintext. */
  ca: string | null;
  /** fetch that trusts exactly `ca` (node:https, portable across Node and Bun). */
  fetch: typeof fetch;
}

export type PlaneTrustConfig = Pick<AgentConfig, "controlPlaneUrl" | "stateDir" | "caFile" | "caCertHash" | "trustOnFirstUse" | "allowPlaintext">;

export interface PlaneTrustDeps {
  config: PlaneTrustConfig;
  log: Logger;
  /** Reads `<controlPlaneUrl>/ca.pem` without verification (tests inject one). */
  downloadCa?: (url: string, signal?: AbortSignal) => Promise<string>;
  signal?: AbortSignal;
}

/** GET without certificate verification, size-capped and time-limited. Only for the CA that a pin then checks. */
export async function downloadCaUnverified(url: string, signal?: AbortSignal): Promise<string> {
  const timeout = AbortSignal.timeout(CA_TIMEOUT_MS);
  const res = await httpsFetch({ rejectUnauthorized: false })(url, { signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${url}: HTTP ${res.status}`);
  if (text.length > MAX_CA_BYTES) throw new Error(`GET ${url}: ${text.length} bytes is not a CA certificate`);
  return text;
}

function asFetch(ca: string | null): typeof fetch {
  return httpsFetch(ca === null ? {} : { ca }) as typeof fetch;
}

function readPem(file: string, option: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (cause) {
    throw new ConfigError(`${option}: cannot read ${file}: ${(cause as Error).message}`, option, { cause });
  }
}

/**
 * Finds or establishes the plane's trust anchor (see the module comment). Throws:
 * - ConfigError: plaintext without `allowPlaintext`, or no way to authenticate the plane (no caFile, no stored
 *   CA, no caCertHash, no trustOnFirstUse), or an unreadable caFile;
 * - PlaneIdentityError: the server's CA does not match the pin (names the address);
 * - any other Error: the plane could not be reached (retry later).
 */
export async function establishPlaneTrust(deps: PlaneTrustDeps): Promise<PlaneTrust> {
  const { config, log } = deps;
  const url = new URL(config.controlPlaneUrl);
  if (url.protocol === "http:") {
    // HW-TLS-1: the enrollment request and the command-key pin would travel in the clear.
    if (!config.allowPlaintext) {
      throw new ConfigError(`controlPlaneUrl: ${config.controlPlaneUrl} is plaintext HTTP; use https:// (or set allowPlaintext: true on a trusted network)`, "controlPlaneUrl");
    }
    log.warn({ controlPlaneUrl: config.controlPlaneUrl }, "PLAINTEXT: the control plane is not authenticated (allowPlaintext)");
    return { source: "plaintext", ca: null, fetch: asFetch(null) };
  }
  if (config.caFile) {
    const ca = readPem(config.caFile, "caFile");
    if (config.caCertHash && caCertHash(ca) !== config.caCertHash) {
      throw new ConfigError(`caFile: ${config.caFile} has key hash ${caCertHash(ca)}, not caCertHash ${config.caCertHash}`, "caFile");
    }
    return { source: "provisioned", ca, fetch: asFetch(ca) };
  }
  const storedFile = join(config.stateDir, PLANE_CA_FILE);
  if (existsSync(storedFile)) {
    const ca = readPem(storedFile, "stateDir");
    // A re-provisioned pin that disagrees with the stored CA is an operator's decision to make, not ours.
    if (config.caCertHash && caCertHash(ca) !== config.caCertHash) {
      throw new ConfigError(`caCertHash: ${config.caCertHash} differs from the CA pinned in ${storedFile} (${caCertHash(ca)}); a pinned CA is never replaced`, "caCertHash");
    }
    return { source: "stored", ca, fetch: asFetch(ca) };
  }
  if (!config.caCertHash && !config.trustOnFirstUse) {
    throw new ConfigError(
      "caCertHash: the control plane cannot be authenticated: set caCertHash (printed with the enrollment token), or caFile, or trustOnFirstUse: true",
      "caCertHash",
    );
  }
  const address = new URL("/ca.pem", url).href;
  const pem = await (deps.downloadCa ?? downloadCaUnverified)(address, deps.signal);
  let hash: string;
  try {
    hash = caCertHash(pem);
  } catch (cause) {
    throw new PlaneIdentityError(`${address} served no CA certificate`, address, { cause });
  }
  if (!isSelfSignedCa(pem)) throw new PlaneIdentityError(`${address} served a certificate that is not a self-signed CA`, address);
  if (config.caCertHash) {
    // HW-PIN-2: the plane is who the token's issuer said, or it gets nothing.
    if (hash !== config.caCertHash) {
      throw new PlaneIdentityError(`${address} presented CA key ${hash}, not the pinned ${config.caCertHash}`, address);
    }
  } else {
    log.warn({ address, caCertHash: hash }, "TRUST ON FIRST USE: the control plane's CA was taken unauthenticated (trustOnFirstUse)");
  }
  writeFileAtomicSync(storedFile, pem, 0o644);
  log.info({ address, caCertHash: hash, file: storedFile }, "control plane CA pinned");
  return { source: config.caCertHash ? "pin" : "trust-on-first-use", ca: pem, fetch: asFetch(pem) };
}

/** True when `error` means the peer failed TLS verification against the pinned CA (see shared/tls). */
export function isIdentityFailure(error: unknown): boolean {
  return error instanceof PlaneIdentityError || isTlsVerificationError(error);
}

/** Same URL for our purposes: scheme, host and port (default ports filled in). */
export function sameEndpoint(a: string, b: string): boolean {
  try {
    const ua = new URL(a);
    const ub = new URL(b);
    const port = (u: URL) => u.port || ({ "mqtt:": "1883", "mqtts:": "8883", "http:": "80", "https:": "443" } as Record<string, string>)[u.protocol] || "";
    return ua.protocol === ub.protocol && ua.hostname.toLowerCase() === ub.hostname.toLowerCase() && port(ua) === port(ub);
  } catch {
    return a === b;
  }
}

export const CLIENT_KEY_FILE = "mqtt-client.key";
export const CLIENT_CERT_FILE = "mqtt-client.pem";

/**
 * HW-MTLS-1: the device's TLS client key (ECDSA P-256, PKCS#8 PEM, 0600 in `<stateDir>/mqtt-client.key`), made
 * once. Returns the key and its SPKI PEM public key (sent, signed, in the enrollment request).
 */
export function loadOrCreateClientKey(stateDir: string): { keyPem: string; publicKeyPem: string } {
  const file = join(stateDir, CLIENT_KEY_FILE);
  let keyPem: string;
  if (existsSync(file)) {
    keyPem = readPem(file, "mqttClientCertificate");
  } else {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    writeFileAtomicSync(file, keyPem, 0o600);
  }
  const publicKeyPem = createPublicKey(keyPem).export({ type: "spki", format: "pem" }).toString();
  return { keyPem, publicKeyPem };
}

/** The stored client certificate and key, or null when the plane has not issued one yet. */
export function storedClientCertificate(stateDir: string): { cert: string; key: string } | null {
  const certFile = join(stateDir, CLIENT_CERT_FILE);
  const keyFile = join(stateDir, CLIENT_KEY_FILE);
  if (!existsSync(certFile) || !existsSync(keyFile)) return null;
  return { cert: readPem(certFile, "mqttClientCertificate"), key: readPem(keyFile, "mqttClientCertificate") };
}

/** Stores a client certificate from the (authenticated) enrollment answer. */
export function storeClientCertificate(stateDir: string, pem: string): void {
  writeFileAtomicSync(join(stateDir, CLIENT_CERT_FILE), pem, 0o644);
}
