/**
 * The plane's TLS identity (HW-TLS-1, HW-TLS-2): its own certificate authority, created at first start
 * (`<dataDir>/ca.pem`, key `<dataDir>/ca.key` 0600), and a server certificate it issues itself for HTTPS and
 * MQTT over TLS, or certificate and key files the operator provides.
 *
 * X.509 is made with @peculiar/x509 over WebCrypto (Node and Bun alike); keys are ECDSA P-256, which every
 * broker and TLS stack in the field speaks. The server certificate is issued at every start (its subject
 * alternative names follow the configuration) and re-issued when less than a third of its lifetime is left;
 * `onRenew` listeners swap it into the running servers (tls.Server#setSecureContext), so connected devices
 * keep their sessions.
 */
import { webcrypto, X509Certificate as NodeX509 } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import type { Server as HttpServer } from "node:http";
import { isIP, type Server as NetServer, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import { createAdaptorServer } from "@hono/node-server";
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata polyfill loaded first.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import type { Logger } from "pino";
import { ConfigError } from "../../../shared/errors/index.js";
import { caCertHash } from "../../../shared/tls/index.js";
import { assertPrivateFile, writeSecretFileAtomic } from "../keys/index.js";
import type { SharedSecrets } from "../replicas/index.js";

export const CA_CERT_FILE = "ca.pem";
export const CA_KEY_FILE = "ca.key";
const CA_LIFETIME_MS = 10 * 365 * 24 * 3_600_000;
/** Certificates start a little in the past: a board whose clock lags a few minutes must still accept them. */
const BACKDATE_MS = 5 * 60_000;

const EC_ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/** Key and certificate as PEM text, ready for tls.createServer / createSecureContext. */
export interface PemPair {
  cert: string;
  key: string;
}

export interface CertificateAuthority {
  /** PEM of the CA certificate (what `<dataDir>/ca.pem` holds and agents pin). */
  certPem: string;
  /** `sha256:<hex>` of the CA's SubjectPublicKeyInfo (kubeadm discovery-token-ca-cert-hash). */
  caCertHash: string;
  /** Null when the operator provided the server certificate: the plane cannot issue then. */
  issuer: { cert: x509.X509Certificate; privateKey: CryptoKey } | null;
}

function pemKey(der: ArrayBuffer): string {
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

function serialNumber(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0]! &= 0x7f; // positive (RFC 5280 4.1.2.2)
  return Buffer.from(bytes).toString("hex");
}

async function importPrivateKey(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem);
  return webcrypto.subtle.importKey("pkcs8", der, EC_ALGORITHM, true, ["sign"]) as Promise<CryptoKey>;
}

/** A CA as PEM text: what `ca.pem` / `ca.key` hold, and what replicas share in plane_secrets `tls-ca`. */
interface CaPem {
  certPem: string;
  keyPem: string;
}

/** Parses a CA from PEM; ConfigError (HASHWARD_DATA_DIR) naming `where` when it is not a matching P-256 CA. */
async function caFromPem({ certPem, keyPem }: CaPem, where: string): Promise<CertificateAuthority> {
  const option = "HASHWARD_DATA_DIR";
  try {
    const cert = new x509.X509Certificate(certPem);
    const privateKey = await importPrivateKey(keyPem);
    return { certPem, caCertHash: caCertHash(certPem), issuer: { cert, privateKey } };
  } catch (cause) {
    throw new ConfigError(`${option}: ${where} do not hold a P-256 CA certificate and key: ${(cause as Error).message}`, option, { cause });
  }
}

/**
 * `<dataDir>/ca.pem` + `ca.key`, or null when neither exists. Throws ConfigError (HASHWARD_DATA_DIR) when only
 * the key exists, or the key is readable by others. `certWithoutKey`: what only a certificate means (alone it is
 * an error; a replica keeps a copy of the shared CA's certificate there for the CLI, and that is no CA).
 */
async function readCaFiles(dataDir: string, certWithoutKey: "error" | "ignore"): Promise<CaPem | null> {
  const option = "HASHWARD_DATA_DIR";
  const certPath = join(dataDir, CA_CERT_FILE);
  const keyPath = join(dataDir, CA_KEY_FILE);
  const haveCert = existsSync(certPath);
  const haveKey = existsSync(keyPath);
  if (haveCert && !haveKey && certWithoutKey === "ignore") return null;
  if (haveCert !== haveKey) {
    throw new ConfigError(`${option}: ${haveCert ? keyPath : certPath} is missing but ${haveCert ? certPath : keyPath} exists; restore it or remove both to make a new CA (agents pinned to the old one will refuse the plane)`, option);
  }
  if (!haveCert) return null;
  await assertPrivateFile(keyPath, option);
  return { certPem: readFileSync(certPath, "utf8"), keyPem: readFileSync(keyPath, "utf8") };
}

/** A new self-signed P-256 CA, valid ten years from `now` (less the clock-lag backdating). */
async function generateCa(now: number): Promise<CaPem> {
  const keys = (await webcrypto.subtle.generateKey(EC_ALGORITHM, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=Hashward control plane CA ${hostname().slice(0, 40)}`,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + CA_LIFETIME_MS),
    signingAlgorithm: EC_ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: `${cert.toString("pem")}\n`, keyPem: pemKey(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)) };
}

/**
 * Loads `<dataDir>/ca.pem` + `ca.key`, or creates both (key 0600, written atomically). `created` says which.
 * With `shared` (replicas on PostgreSQL, HW-HA-1): the CA all replicas share (plane_secrets `tls-ca`; this
 * folder's ca.pem + ca.key win when both exist), its certificate written to `<dataDir>/ca.pem` for the CLI and
 * the key kept only in the database.
 * Throws ConfigError (HASHWARD_DATA_DIR) when only one of the two files exists (alone), the key is readable by
 * others, the files do not hold a matching P-256 CA, or they differ from the replicas' CA.
 */
export async function loadOrCreateCa(dataDir: string, now = Date.now(), shared: SharedSecrets | null = null): Promise<{ ca: CertificateAuthority; created: boolean }> {
  const certPath = join(dataDir, CA_CERT_FILE);
  const keyPath = join(dataDir, CA_KEY_FILE);
  if (shared) {
    const result = await shared.loadOrCreate("tls-ca", {
      local: async () => {
        const files = await readCaFiles(dataDir, "ignore");
        return files ? JSON.stringify({ certPem: files.certPem.trim(), keyPem: files.keyPem.trim() }) : null;
      },
      create: async () => {
        const fresh = await generateCa(now);
        return JSON.stringify({ certPem: fresh.certPem.trim(), keyPem: fresh.keyPem.trim() });
      },
      localDescription: `${certPath} + ${keyPath}`,
    });
    const pem = JSON.parse(result.value) as CaPem;
    const ca = await caFromPem({ certPem: `${pem.certPem}\n`, keyPem: pem.keyPem }, "plane_secrets tls-ca");
    if (result.origin !== "local" && (!existsSync(certPath) || readFileSync(certPath, "utf8") !== ca.certPem)) {
      await writeSecretFileAtomic(certPath, ca.certPem); // 0600 like every data-dir file (HW-DATA-1); copy it out to share it
    }
    return { ca, created: result.origin === "created" };
  }
  const files = await readCaFiles(dataDir, "error");
  if (files) return { ca: await caFromPem(files, `${certPath} / ${keyPath}`), created: false };
  const fresh = await generateCa(now);
  // Key first: a crash between the two writes leaves a key without a certificate, refused above (never a
  // certificate whose key is lost).
  await writeSecretFileAtomic(keyPath, fresh.keyPem);
  await writeSecretFileAtomic(certPath, fresh.certPem); // 0600 like every data-dir file (HW-DATA-1)
  return { ca: await caFromPem(fresh, "the new CA"), created: true };
}

/** Subject alternative names: the listen hosts, public names, loopback and this machine's host name. */
export function subjectAltNames(hosts: readonly string[]): { type: "dns" | "ip"; value: string }[] {
  const names = new Set<string>(["localhost", "127.0.0.1", "::1", hostname()]);
  for (const host of hosts) {
    const bare = host.replace(/^\[|\]$/g, "");
    if (bare === "" || bare === "0.0.0.0" || bare === "::") continue;
    names.add(bare);
  }
  return [...names].map((value) => ({ type: isIP(value) ? ("ip" as const) : ("dns" as const), value }));
}

/** A leaf certificate signed by `ca`: server (SANs) or client (CN = device id) usage. */
async function issueLeaf(
  ca: NonNullable<CertificateAuthority["issuer"]>,
  subject: string,
  publicKey: CryptoKey,
  usage: "server" | "client",
  sans: { type: "dns" | "ip"; value: string }[],
  lifetimeMs: number,
  now: number,
): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject,
    issuer: ca.cert.subject,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + lifetimeMs),
    signingAlgorithm: EC_ALGORITHM,
    publicKey,
    signingKey: ca.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([usage === "server" ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
      ...(sans.length > 0 ? [new x509.SubjectAlternativeNameExtension(sans)] : []),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
    ],
  });
}

/**
 * A fresh server key and certificate for `hosts` (see subjectAltNames), valid `lifetimeMs`, signed by `ca`.
 * The certificate PEM is the chain leaf + CA, so clients that pin the CA see it in the handshake.
 */
export async function issueServerCertificate(ca: CertificateAuthority, hosts: readonly string[], lifetimeMs: number, now = Date.now()): Promise<PemPair & { notAfter: Date; serialNumber: string }> {
  if (!ca.issuer) throw new Error("the CA key is not available (operator-provided certificate)");
  const keys = (await webcrypto.subtle.generateKey(EC_ALGORITHM, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const cert = await issueLeaf(ca.issuer, "CN=Hashward control plane", keys.publicKey, "server", subjectAltNames(hosts), lifetimeMs, now);
  return {
    cert: `${cert.toString("pem")}\n${ca.certPem.trim()}\n`,
    key: pemKey(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)),
    notAfter: cert.notAfter,
    serialNumber: cert.serialNumber,
  };
}

/**
 * A client certificate for mutual TLS (HW-MTLS-1): subject CN = the device id, extended key usage clientAuth,
 * for the P-256 public key the device sent (SPKI PEM) in its signed enrollment request.
 * Throws ValidationError-like Error when the key is not a P-256 SPKI.
 */
export async function issueClientCertificate(ca: CertificateAuthority, deviceId: string, publicKeyPem: string, lifetimeMs: number, now = Date.now()): Promise<string> {
  if (!ca.issuer) throw new Error("the CA key is not available (operator-provided certificate)");
  const der = x509.PemConverter.decodeFirst(publicKeyPem);
  const publicKey = (await webcrypto.subtle.importKey("spki", der, EC_ALGORITHM, true, ["verify"])) as CryptoKey;
  const cert = await issueLeaf(ca.issuer, `CN=${deviceId}`, publicKey, "client", [], lifetimeMs, now);
  return `${cert.toString("pem")}\n`;
}

export interface TlsSettings {
  /** Operator-provided PEM files (HASHWARD_TLS_CERT_FILE / _KEY_FILE / _CA_FILE); all three or none. */
  certFile?: string;
  keyFile?: string;
  caFile?: string;
  /** Server certificate lifetime and renewal check interval (self-issued certificates only). */
  certLifetimeMs: number;
  renewCheckMs: number;
}

/** What the listeners need, and the renewal hook. */
export interface PlaneTls {
  ca: CertificateAuthority;
  current(): PemPair;
  /** Registers a listener called with the new pair after every renewal (e.g. server.setSecureContext). */
  onRenew(listener: (pair: PemPair) => void): void;
  /**
   * Re-issues now if less than a third of the lifetime is left (the plane calls it right before listening: a
   * slow start, e.g. a first database initialisation, must not open listeners with a stale certificate).
   */
  renewIfDue(): Promise<void>;
  /** Issues a client certificate (mutual TLS); null when the CA key is not held. */
  issueClientCertificate(deviceId: string, publicKeyPem: string): Promise<string | null>;
  /** Stops the renewal timer. */
  close(): void;
}

/**
 * Loads or creates the plane's TLS identity (with `shared`: the CA all replicas share, HW-HA-1; each replica
 * issues and renews its own server certificate) and starts its renewal timer (self-issued only: an operator's
 * certificate is theirs to renew, and a restart picks the new files up).
 * Throws ConfigError naming the variable for unreadable or mismatched operator files.
 */
export async function startPlaneTls(
  dataDir: string,
  hosts: readonly string[],
  settings: TlsSettings,
  logger: Logger,
  now: () => number = Date.now,
  shared: SharedSecrets | null = null,
): Promise<PlaneTls> {
  const listeners: ((pair: PemPair) => void)[] = [];
  if (settings.certFile || settings.keyFile || settings.caFile) {
    const read = (option: string, path: string | undefined): string => {
      if (!path) throw new ConfigError(`${option}: must be set together with HASHWARD_TLS_CERT_FILE, HASHWARD_TLS_KEY_FILE and HASHWARD_TLS_CA_FILE`, option);
      try {
        return readFileSync(path, "utf8");
      } catch (cause) {
        throw new ConfigError(`${option}=${path}: cannot read: ${(cause as Error).message}`, option, { cause });
      }
    };
    const cert = read("HASHWARD_TLS_CERT_FILE", settings.certFile);
    const key = read("HASHWARD_TLS_KEY_FILE", settings.keyFile);
    const caPem = read("HASHWARD_TLS_CA_FILE", settings.caFile);
    let hash: string;
    try {
      hash = caCertHash(caPem);
      if (!new NodeX509(cert).checkIssued(new NodeX509(caPem))) throw new Error("the certificate was not issued by this CA");
    } catch (cause) {
      throw new ConfigError(`HASHWARD_TLS_CA_FILE=${settings.caFile}: ${(cause as Error).message}`, "HASHWARD_TLS_CA_FILE", { cause });
    }
    const pair = { cert: cert.includes(caPem.trim()) ? cert : `${cert.trim()}\n${caPem.trim()}\n`, key };
    logger.info({ certFile: settings.certFile, caCertHash: hash }, "TLS: operator-provided server certificate");
    return {
      ca: { certPem: caPem, caCertHash: hash, issuer: null },
      current: () => pair,
      onRenew: (listener) => listeners.push(listener),
      renewIfDue: () => Promise.resolve(),
      issueClientCertificate: () => Promise.resolve(null),
      close: () => undefined,
    };
  }

  const { ca, created } = await loadOrCreateCa(dataDir, now(), shared);
  logger.info({ caFile: join(dataDir, CA_CERT_FILE), caCertHash: ca.caCertHash, created }, created ? "TLS certificate authority created" : "TLS certificate authority loaded");
  let issued = await issueServerCertificate(ca, hosts, settings.certLifetimeMs, now());
  let pair: PemPair = { cert: issued.cert, key: issued.key };
  let renewing: Promise<void> | null = null;
  // HW-TLS-2: renew when less than a third of the lifetime is left (as the TUF timestamp, HW-TUF-3).
  const renewIfDue = (): Promise<void> => {
    if (renewing) return renewing;
    if (issued.notAfter.getTime() - now() > settings.certLifetimeMs / 3) return Promise.resolve();
    renewing = issueServerCertificate(ca, hosts, settings.certLifetimeMs, now())
      .then((next) => {
        issued = next;
        pair = { cert: next.cert, key: next.key };
        // Every listener gets the new pair even if another one throws; a failed swap is an error naming it.
        let swapped = 0;
        for (const [index, listener] of listeners.entries()) {
          try {
            listener(pair);
            swapped += 1;
          } catch (error) {
            logger.error({ err: error, listener: index }, "TLS server certificate renewed but not swapped into a listener");
          }
        }
        logger.info({ serialNumber: next.serialNumber, notAfter: next.notAfter.toISOString(), listeners: listeners.length, swapped }, "TLS server certificate renewed");
      })
      .catch((error: unknown) => logger.error({ err: error }, "TLS server certificate renewal failed; retrying"))
      .finally(() => {
        renewing = null;
      });
    return renewing;
  };
  const timer = setInterval(() => void renewIfDue(), settings.renewCheckMs);
  timer.unref();
  return {
    ca,
    current: () => pair,
    onRenew: (listener) => listeners.push(listener),
    renewIfDue,
    issueClientCertificate: (deviceId, publicKeyPem) => issueClientCertificate(ca, deviceId, publicKeyPem, CA_LIFETIME_MS / 10, now()),
    close: () => clearInterval(timer),
  };
}

/** The API's HTTP server (handlers, timeouts) and the socket server that listens for it. */
export interface ApiServer {
  /** node:http server: request handling and HTTP timeouts (HW-HTTP-3, HW-HTTP-4) are set on it. */
  http: HttpServer;
  /** What listens: `http` itself for plaintext, a node:tls server handing decrypted sockets to `http` for TLS. */
  listener: NetServer;
}

/**
 * The API server: node:http for plaintext; with `tls` (HW-TLS-1), a node:tls listener with the plane's
 * certificate whose decrypted sockets are handed to the same node:http server (`emit("connection")`, Node's
 * documented way to serve HTTP over any duplex). Works under Node and Bun (@hono/node-server adapter).
 *
 * Why not node:https: Bun 1.4's https.Server has no setSecureContext (measured: "server.setSecureContext is not
 * a function" at the first renewal, so `npm start` kept serving the first certificate until it expired), while
 * its tls.Server swaps the context of a listening server. HW-TLS-2: renewals swap the certificate in place;
 * open connections keep theirs.
 */
export function createApiServer(fetchHandler: (request: Request) => Response | Promise<Response>, tls: PlaneTls | null): ApiServer {
  const http = createAdaptorServer({ fetch: fetchHandler }) as HttpServer;
  if (!tls) return { http, listener: http };
  const listener = createTlsServer({ ...tls.current() }, (socket) => http.emit("connection", socket));
  tls.onRenew((pair) => listener.setSecureContext(pair)); // HW-TLS-2
  return { http, listener };
}

/**
 * The MQTT over TLS listener factory for Broker#listen. With `requireClientCert` (HW-MTLS-1) the handshake
 * fails unless the device shows a certificate issued by the plane's CA; the broker then checks that its CN is
 * the CONNECT username (control-plane/src/broker).
 */
export function mqttTlsServerFactory(tls: PlaneTls, requireClientCert: boolean): (onConnection: (socket: Socket) => void) => NetServer {
  return (onConnection) => {
    const server = createTlsServer(
      {
        ...tls.current(),
        ...(requireClientCert ? { requestCert: true, rejectUnauthorized: true, ca: tls.ca.certPem } : {}),
      },
      onConnection,
    );
    tls.onRenew((pair) => server.setSecureContext({ ...pair, ...(requireClientCert ? { ca: tls.ca.certPem } : {}) }));
    return server;
  };
}
