/**
 * TLS helpers shared by the agent, the operator CLI and the tests: the CA pin and an HTTPS client that trusts
 * exactly the CA it is given.
 *
 * The pin follows kubeadm's `--discovery-token-ca-cert-hash`: `sha256:<64 hex>` of the CA certificate's DER
 * SubjectPublicKeyInfo, so it survives a re-issued CA certificate for the same key (HW-PIN-2).
 *
 * Why our own fetch: Node's global fetch (undici) takes no `ca` option without an undici dispatcher, and Bun's
 * fetch `tls` option does not exist on Node. `node:https` with `ca` behaves the same on Node and Bun, so the
 * agent (compiled Bun binary and Node bundle) and the CLI share one path. Only what Hashward's clients use is
 * supported: method, headers, a string/bytes body, an AbortSignal; redirects are never followed.
 */
import { X509Certificate, createHash } from "node:crypto";
import { request as httpsRequest, type RequestOptions } from "node:https";
import { request as httpRequest } from "node:http";
import { ipFamily } from "../net/index.js";
import { Readable } from "node:stream";
import { ValidationError } from "../errors/index.js";

/** The pin format: `sha256:` and 64 lowercase hex digits. */
export const CA_CERT_HASH_PATTERN = /^sha256:[0-9a-f]{64}$/;

/** Every PEM certificate block in `pem`, in order. */
export function pemCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/**
 * `sha256:<hex>` of the DER SubjectPublicKeyInfo of the FIRST certificate in `pem`.
 * Throws ValidationError (field "certificate") when `pem` holds no parsable certificate.
 */
export function caCertHash(pem: string): string {
  const first = pemCertificates(pem)[0];
  if (!first) throw new ValidationError("no PEM certificate found", "certificate");
  let spki: Buffer;
  try {
    spki = new X509Certificate(first).publicKey.export({ type: "spki", format: "der" });
  } catch (cause) {
    throw new ValidationError(`not a parsable X.509 certificate: ${(cause as Error).message}`, "certificate", { cause });
  }
  return `sha256:${createHash("sha256").update(spki).digest("hex")}`;
}

/** True when `pem`'s first certificate is a CA (basicConstraints CA:TRUE) that signed itself. */
export function isSelfSignedCa(pem: string): boolean {
  try {
    const cert = new X509Certificate(pemCertificates(pem)[0] ?? "");
    return cert.ca && cert.checkIssued(cert) && cert.verify(cert.publicKey);
  } catch {
    return false;
  }
}

/** OpenSSL/Node error codes of a peer that did not prove the expected identity (chain or host name). */
const VERIFICATION_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "HOSTNAME_MISMATCH",
  "ERR_SSL_WRONG_VERSION_NUMBER",
  "ERR_SSL_PACKET_LENGTH_TOO_LONG",
  "EPROTO",
]);

/**
 * True when `error` (or its cause chain) says the TLS peer failed verification or spoke no TLS at all (a
 * plaintext server on a TLS address). Network errors (refused, timeout) are not verification failures.
 */
export function isTlsVerificationError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth += 1) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (VERIFICATION_CODES.has(code) || code.startsWith("ERR_SSL_") || code.startsWith("ERR_TLS_CERT"))) return true;
    const message = (e as { message?: unknown }).message;
    if (typeof message === "string" && /self[- ]signed|unable to verify|altname|certificate|wrong version number|packet length too long/i.test(message)) {
      return true;
    }
  }
  return false;
}

export interface HttpsFetchOptions {
  /** PEM trust anchors: the ONLY CAs trusted (system CAs are not added). Absent: system CAs. */
  ca?: string;
  /** false only for the one unauthenticated CA download that a pin or an explicit trust-on-first-use checks. */
  rejectUnauthorized?: boolean;
  /** Client certificate and key (PEM) for mutual TLS. */
  cert?: string;
  key?: string;
}

type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

function bodyBytes(body: RequestInit["body"]): Buffer | Blob | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body === "string") return Buffer.from(body, "utf8");
  if (body instanceof Uint8Array) return Buffer.from(body);
  if (body instanceof ArrayBuffer) return Buffer.from(new Uint8Array(body));
  // A file-backed Blob (fs.openAsBlob): streamed, never held in memory (release image uploads).
  if (body instanceof Blob) return body;
  throw new TypeError("httpsFetch: only string, byte and Blob bodies are supported");
}

/** `<HASHWARD_DATA_DIR or ./data>/ca.pem`: where the plane writes its CA, trusted by the operator tools by default. */
export function defaultPlaneCaFile(env: Readonly<Record<string, string | undefined>>): string {
  const dataDir = env.HASHWARD_DATA_DIR?.trim() || "./data";
  return `${dataDir.replace(/\/+$/, "")}/ca.pem`;
}

/**
 * A `fetch` over node:https (and node:http for http:// URLs) with the given trust anchors. Resolves with a
 * standard Response whose body streams; rejects like fetch on network and TLS errors (the Node error is the
 * `cause`, so isTlsVerificationError() works on it). Redirects are returned as-is, never followed.
 */
export function httpsFetch(options: HttpsFetchOptions = {}): FetchLike {
  return (input, init = {}) =>
    new Promise<Response>((resolve, reject) => {
      const url = new URL(typeof input === "string" || input instanceof URL ? input.toString() : input.url);
      const headers: Record<string, string> = {};
      new Headers(init.headers).forEach((value, name) => {
        headers[name] = value;
      });
      const body = bodyBytes(init.body);
      if (body) headers["content-length"] = String(body instanceof Blob ? body.size : body.length);
      const secure = url.protocol === "https:";
      const requestOptions: RequestOptions = {
        method: init.method ?? "GET",
        headers,
        ...(init.signal ? { signal: init.signal } : {}),
        ...(secure
          ? {
              rejectUnauthorized: options.rejectUnauthorized ?? true,
              ...(options.ca ? { ca: options.ca } : {}),
              ...(options.cert ? { cert: options.cert } : {}),
              ...(options.key ? { key: options.key } : {}),
              ...(ipFamily(url.hostname) ? {} : { servername: url.hostname }),
              // A fresh connection per request: a pooled socket could carry another trust setting.
              agent: false,
            }
          : { agent: false }),
      };
      const req = (secure ? httpsRequest : httpRequest)(url, requestOptions, (res) => {
        const responseHeaders = new Headers();
        for (const [name, value] of Object.entries(res.headers)) {
          if (Array.isArray(value)) for (const v of value) responseHeaders.append(name, v);
          else if (value !== undefined) responseHeaders.set(name, value);
        }
        const status = res.statusCode ?? 502;
        const noBody = status === 204 || status === 304 || init.method === "HEAD";
        if (noBody) res.resume();
        resolve(
          new Response(noBody ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), {
            status,
            statusText: res.statusMessage ?? "",
            headers: responseHeaders,
          }),
        );
      });
      req.on("error", (error) => reject(new TypeError(`fetch failed: ${error.message}`, { cause: error })));
      if (body instanceof Blob) {
        Readable.fromWeb(body.stream() as Parameters<typeof Readable.fromWeb>[0])
          .on("error", (error) => req.destroy(error))
          .pipe(req);
      } else if (body) req.end(body);
      else req.end();
    });
}
