/**
 * The agent's test kit (not shipped in the binary: only tests import this folder): the repo's temp-dir and
 * polling helpers (test/support), a plane command signer, an in-process aedes broker on port 0 that checks
 * connect tokens, and a fake enrollment HTTP server.
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { Aedes, type AedesPublishPacket } from "aedes";
import {
  enrollmentRequestSchema,
  fromBase64Url,
  generateKeyPair,
  NonceMemory,
  parseTopic,
  PROTOCOL_VERSION,
  signObject,
  toBase64Url,
  verifyConnectToken,
  verifySignedObject,
  type Command,
  type EnrollmentResponse,
  type KeyPair,
} from "../../../shared/index.js";

export { tempDir, tempDirPool, type TempDir, type TempDirPool } from "../../../test/support/temp-dir.js";
export { waitFor, type WaitOptions } from "../../../test/support/wait.js";

/**
 * Makes every write into `dir` fail (HW-FAULT-10 tests without root or a tmpfs): the directory is moved aside and a
 * plain file takes its place, so creating a temp file there fails (ENOTDIR/EEXIST) as on a full disk. Returns the
 * undo, which puts the directory (and whatever it held) back.
 */
export function refuseWrites(dir: string): () => void {
  const aside = `${dir}.aside`;
  renameSync(dir, aside);
  writeFileSync(dir, "not a directory\n");
  return () => {
    rmSync(dir, { force: true });
    renameSync(aside, dir);
  };
}

export class PlaneSigner {
  readonly keyPair: KeyPair = generateKeyPair();
  get publicKey(): string {
    return toBase64Url(this.keyPair.publicKey);
  }
  command(deviceId: string, seq: number, action: Command["action"], opts: { params?: Record<string, unknown>; nowMs?: number; ttlMs?: number; key?: KeyPair } = {}): Command {
    const now = opts.nowMs ?? Date.now();
    return signObject(
      { v: PROTOCOL_VERSION, type: "command" as const, deviceId, seq, issuedAt: now, expiresAt: now + (opts.ttlMs ?? 60_000), action, params: opts.params ?? {} },
      (opts.key ?? this.keyPair).privateKey,
    );
  }
}

export interface ReceivedMessage {
  deviceId: string;
  kind: string;
  body: Record<string, unknown>;
  qos: number;
  /** Nonce of the connect token that opened the connection this message came on (HW-LIVE-1). */
  connectNonce: string | undefined;
}

/** An aedes broker on port 0 that authenticates devices by connect token (HW-AUTH-1) and records up/ traffic. */
export class TestBroker {
  broker!: Aedes;
  server!: NetServer;
  port = 0;
  readonly received: ReceivedMessage[] = [];
  readonly keys = new Map<string, Uint8Array>();
  readonly nonces = new NonceMemory();
  connects = 0;
  refused = 0;
  readonly #connectNonces = new WeakMap<object, string>();

  /** Listens with TLS (mqtts) when given a key and certificate. */
  async start(port = 0, tls?: { key: string; cert: string }): Promise<this> {
    this.broker = await Aedes.createBroker({
      authenticate: (client, username, password, done) => {
        try {
          const pub = username ? this.keys.get(username) : undefined;
          if (!pub || !password || client.id !== username) throw new Error("unknown device");
          const claims = verifyConnectToken(password.toString(), username!, pub, Date.now());
          if (!this.nonces.remember(claims.nonce, claims.exp, Date.now())) throw new Error("token replayed");
          this.#connectNonces.set(client, claims.nonce);
          this.connects += 1;
          done(null, true);
        } catch {
          this.refused += 1;
          const error = Object.assign(new Error("refused"), { returnCode: 4 as const });
          done(error, false);
        }
      },
    });
    this.broker.on("publish", (packet: AedesPublishPacket, client) => {
      if (!client) return;
      const topic = parseTopic(packet.topic);
      if (!topic || topic.direction !== "up") return;
      this.received.push({ deviceId: topic.deviceId, kind: topic.kind, body: JSON.parse(packet.payload.toString()) as Record<string, unknown>, qos: packet.qos, connectNonce: this.#connectNonces.get(client) });
    });
    this.tls = tls !== undefined;
    this.server = tls ? createTlsServer(tls, this.broker.handle) : createNetServer(this.broker.handle);
    await new Promise<void>((resolve) => this.server.listen(port, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  private tls = false;

  get url(): string {
    return `${this.tls ? "mqtts://localhost" : "mqtt://127.0.0.1"}:${this.port}`;
  }

  of(kind: string): Record<string, unknown>[] {
    return this.received.filter((m) => m.kind === kind).map((m) => m.body);
  }

  publishDown(deviceId: string, kind: "command" | "challenge", body: object): Promise<void> {
    return new Promise((resolve, reject) =>
      this.broker.publish(
        { cmd: "publish", topic: `asic/v1/${deviceId}/down/${kind}`, payload: Buffer.from(JSON.stringify(body)), qos: 1, retain: false, dup: false },
        (error) => (error ? reject(error) : resolve()),
      ),
    );
  }

  publishRaw(topic: string, payload: Buffer): Promise<void> {
    return new Promise((resolve, reject) =>
      this.broker.publish({ cmd: "publish", topic, payload, qos: 1, retain: false, dup: false }, (error) => (error ? reject(error) : resolve())),
    );
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.broker.close(() => resolve()));
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Fake enrollment endpoint: verifies the signed request, answers with `decide(request)`. */
export class FakeEnrollmentServer {
  server!: HttpServer;
  port = 0;
  readonly requests: { deviceId: string; publicKey: string; enrollmentToken?: string | undefined }[] = [];
  decide: (deviceId: string) => { status: number; enrollment: EnrollmentResponse["enrollment"]; mqttUrl?: string } = () => ({ status: 200, enrollment: "accepted" });
  /** Called for accepted devices (e.g. to register the key with a TestBroker). */
  onAccepted: (deviceId: string, publicKey: Uint8Array) => void = () => {};

  constructor(public commandPublicKey: string) {}

  async start(): Promise<this> {
    this.server = createHttpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        if (req.method !== "POST" || req.url !== "/api/v1/enroll") {
          res.writeHead(404).end();
          return;
        }
        try {
          const request = enrollmentRequestSchema.parse(JSON.parse(Buffer.concat(chunks).toString()));
          const pub = fromBase64Url(request.publicKey);
          verifySignedObject(request, pub);
          this.requests.push({ deviceId: request.deviceId, publicKey: request.publicKey, enrollmentToken: request.enrollmentToken });
          const decision = this.decide(request.deviceId);
          if (decision.enrollment === "accepted") this.onAccepted(request.deviceId, pub);
          const body: EnrollmentResponse = {
            deviceId: request.deviceId,
            enrollment: decision.enrollment,
            commandPublicKey: this.commandPublicKey,
            ...(decision.mqttUrl ? { mqttUrl: decision.mqttUrl } : {}),
          };
          res.writeHead(decision.status, { "content-type": "application/json" }).end(JSON.stringify(body));
        } catch (error) {
          res.writeHead(400).end(String(error));
        }
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A stand-in plane for agent tests: command signer, authenticating broker, enrollment endpoint, wired together. */
export interface StandInPlane {
  plane: PlaneSigner;
  broker: TestBroker;
  enrollment: FakeEnrollmentServer;
}

/**
 * Starts a {@link StandInPlane}: every accepted device's key is registered with the broker, and the enrollment
 * answer points the agent at the broker (`mqttUrl`). Pushes the closers onto `cleanups` (run them in reverse).
 */
export async function startStandInPlane(cleanups: (() => void | Promise<void>)[]): Promise<StandInPlane> {
  const plane = new PlaneSigner();
  const broker = await new TestBroker().start();
  cleanups.push(() => broker.close());
  const enrollment = await new FakeEnrollmentServer(plane.publicKey).start();
  cleanups.push(() => enrollment.close());
  enrollment.onAccepted = (deviceId, pub) => broker.keys.set(deviceId, pub);
  enrollment.decide = () => ({ status: 200, enrollment: "accepted", mqttUrl: broker.url });
  return { plane, broker, enrollment };
}

/** A throwaway CA and a localhost server certificate made with the openssl CLI; null when openssl is absent. */
export function makeTestCertificates(dir: string): { ca: string; key: string; cert: string } | null {
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
  try {
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=hashward test CA");
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost");
    writeFileSync(join(dir, "ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "ext.cnf");
  } catch {
    return null;
  }
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  return { ca: read("ca.pem"), key: read("server.key"), cert: read("server.pem") };
}
