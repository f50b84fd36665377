/**
 * The agent's MQTT session (topics and payloads: shared/protocol).
 * - MQTT 3.1.1 (protocolVersion 4: aedes speaks 3.1/3.1.1 only), clientId = username = deviceId,
 *   clean: false so QoS 1 commands queued while we were away are delivered (persistent session).
 * - password = a FRESH connect token on every (re)connect (HW-AUTH-1: the broker remembers nonces, so a
 *   token is single-use). mqtt.js would reuse the old password, hence `reconnectPeriod: 0` and our own
 *   reconnect loop with jittered exponential backoff between reconnectMinMs and reconnectMaxMs.
 * - the token's nonce is `connectNonce` while that connection is up: hello and heartbeats sign it in, so the
 *   plane takes them on this connection only (HW-LIVE-1).
 * - subscribes QoS 1 to its own down/ filter only (HW-TOPIC-1).
 * - every down message is parsed with the shared schemas; anything invalid is dropped, counted and logged
 *   once per reason; a handler error never crashes the process.
 */
import { ipFamily } from "../../../shared/net/index.js";
import mqtt, { type MqttClient } from "mqtt";
import {
  challengeSchema,
  commandSchema,
  downFilter,
  encodePayload,
  HashwardError,
  issueConnectToken,
  parsePayload,
  parseTopic,
  upTopic,
  type Challenge,
  type Command,
  type UpKind,
} from "../../../shared/index.js";
import { OnceLogger, type Logger } from "../log/index.js";
import { isTlsVerificationError } from "../../../shared/tls/index.js";

export class NotConnectedError extends HashwardError {
  override name = "NotConnectedError";
}

export interface SessionOptions {
  url: string;
  deviceId: string;
  privateKey: Uint8Array;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  log: Logger;
  now?: () => number;
  /** [0,1) source for backoff jitter (tests pass a fixed one). */
  random?: () => number;
  connectTimeoutMs?: number;
  /** PEM CA certificates for mqtts://: the ONLY trust anchors (the plane's pinned CA, HW-PIN-2). */
  ca?: string;
  /** Client certificate and key (PEM) for brokers that authenticate devices by certificate (HW-MTLS-1). */
  clientCert?: { cert: string; key: string };
  keepaliveSeconds?: number;
  /** Called after CONNACK and SUBACK: publish hello, startup evidence, flush the outbox. */
  onConnect: () => void | Promise<void>;
  onChallenge: (challenge: Challenge) => void | Promise<void>;
  onCommand: (command: Command) => void | Promise<void>;
  onDisconnect?: () => void;
}

export interface SessionStats {
  connects: number;
  connectFailures: number;
  dropped: Record<string, number>;
}

export function backoffDelayMs(attempt: number, minMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  // "Equal jitter": never below half the ceiling, so a fleet restarted together spreads out but still backs off.
  return Math.max(minMs, Math.round(ceiling / 2 + random() * (ceiling / 2)));
}

export class MqttSession {
  private client: MqttClient | null = null;
  private stopped = true;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly pending = new Set<(error: Error) => void>();
  private readonly once: OnceLogger;
  private readonly dropped: Record<string, number> = {};
  private stats = { connects: 0, connectFailures: 0 };
  private isUp = false;
  /** Nonce of the connect token that opened `client` (HW-LIVE-1). */
  private clientNonce: string | null = null;

  constructor(private readonly opts: SessionOptions) {
    this.once = new OnceLogger(opts.log);
  }

  get connected(): boolean {
    return this.isUp && this.client?.connected === true;
  }

  /**
   * The nonce of the connect token that opened the current connection, or null when not connected. Sign it into
   * hello and heartbeat (`connectNonce`): the plane refuses them on any other connection (HW-LIVE-1).
   */
  get connectNonce(): string | null {
    return this.connected ? this.clientNonce : null;
  }

  get statistics(): SessionStats {
    return { ...this.stats, dropped: { ...this.dropped } };
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const client = this.client;
    this.client = null;
    this.failPending(new NotConnectedError("session stopped"));
    if (client) await new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
  }

  /** Publishes to our own up/ topic. QoS 1 resolves on PUBACK; rejects when not connected or the link drops. */
  publish(kind: UpKind, message: object, qos: 0 | 1 = 1): Promise<void> {
    const client = this.client;
    if (!client || !this.connected) return Promise.reject(new NotConnectedError(`not connected; ${kind} not sent`));
    return new Promise<void>((resolve, reject) => {
      const fail = (error: Error) => {
        this.pending.delete(fail);
        reject(error);
      };
      this.pending.add(fail);
      client.publish(upTopic(this.opts.deviceId, kind), encodePayload(message), { qos }, (error) => {
        if (!this.pending.has(fail)) return;
        this.pending.delete(fail);
        if (error) reject(error);
        else resolve();
      });
    });
  }

  private connect(): void {
    if (this.stopped) return;
    const now = this.opts.now ?? Date.now;
    // Parsed with WHATWG URL here: a URL string makes mqtt.js call the deprecated url.parse() (DEP0169).
    const url = new URL(this.opts.url);
    const secure = url.protocol === "mqtts:";
    // HW-AUTH-1: a fresh single-use token per CONNECT.
    const { token, claims } = issueConnectToken(this.opts.deviceId, this.opts.privateKey, now());
    const client = mqtt.connect({
      protocol: secure ? "mqtts" : "mqtt",
      host: url.hostname.replace(/^\[|\]$/g, ""),
      port: url.port ? Number(url.port) : secure ? 8883 : 1883,
      ...(secure
        ? {
            // SNI carries host names only (RFC 6066 3); an IP literal is still verified against the IP SANs.
            ...(ipFamily(url.hostname) ? {} : { servername: url.hostname }),
            rejectUnauthorized: true,
            ...(this.opts.ca ? { ca: this.opts.ca } : {}),
            ...(this.opts.clientCert ? { cert: this.opts.clientCert.cert, key: this.opts.clientCert.key } : {}),
          }
        : {}),
      protocolVersion: 4,
      clientId: this.opts.deviceId,
      username: this.opts.deviceId,
      password: token,
      clean: false,
      reconnectPeriod: 0,
      connectTimeout: this.opts.connectTimeoutMs ?? 10_000,
      keepalive: this.opts.keepaliveSeconds ?? 30,
      resubscribe: false,
      // mqtt-packet's default builds a table of 65,536 two-byte Buffers at the first write (3 MB of heap for the
      // process's life); packet ids are encoded on the fly instead.
      writeCache: false,
    });
    this.client = client;
    this.clientNonce = claims.nonce;
    let connackSeen = false;
    // HW-PIN-2: a peer that takes the TCP connection but never completes TLS with the pinned CA (another
    // certificate, or a plaintext broker on a TLS address) has had no CONNECT: mqtt.js writes it into the TLS
    // stream, which sends nothing before the handshake is verified. Said at error, once per attempt.
    let tcpConnected = false;
    let tlsEstablished = false;
    let identityLogged = false;
    const identityRefused = (err: string) => {
      if (identityLogged) return;
      identityLogged = true;
      this.opts.log.error({ err, url: this.opts.url }, "MQTT server did not prove the plane's identity (TLS); no CONNECT sent");
    };
    if (secure) {
      const stream = (client as unknown as { stream?: NodeJS.EventEmitter }).stream;
      stream?.once("connect", () => (tcpConnected = true));
      stream?.once("secureConnect", () => (tlsEstablished = true));
    }

    client.on("connect", () => {
      connackSeen = true;
      void this.afterConnack(client);
    });
    client.on("message", (topic, payload) => {
      if (client === this.client) this.onMessage(topic, payload);
    });
    client.on("error", (error) => {
      if (!connackSeen && secure && (isTlsVerificationError(error) || (tcpConnected && !tlsEstablished))) {
        identityRefused(error.message);
        return;
      }
      this.opts.log.warn({ err: error.message, url: this.opts.url }, connackSeen ? "mqtt error" : "mqtt connect failed");
    });
    client.on("close", () => {
      if (client !== this.client && this.client !== null) return;
      if (secure && !connackSeen && tcpConnected && !tlsEstablished) identityRefused("connection closed before the TLS handshake completed");
      const wasUp = this.isUp;
      this.isUp = false;
      this.failPending(new NotConnectedError("connection closed"));
      if (!connackSeen) this.stats.connectFailures += 1;
      client.removeAllListeners("close");
      client.end(true);
      if (wasUp) this.opts.onDisconnect?.();
      this.scheduleReconnect();
    });
  }

  private async afterConnack(client: MqttClient): Promise<void> {
    try {
      // HW-TOPIC-1: our own down/ filter only, QoS 1.
      const granted = await client.subscribeAsync(downFilter(this.opts.deviceId), { qos: 1 });
      if (granted.some((g) => g.qos === 128)) throw new Error("subscription refused by the broker");
    } catch (error) {
      this.opts.log.error({ err: String(error) }, "subscribe failed; reconnecting");
      client.end(true);
      return;
    }
    if (client !== this.client) return;
    this.isUp = true;
    this.attempt = 0;
    this.stats.connects += 1;
    this.opts.log.info({ url: this.opts.url, connects: this.stats.connects }, "mqtt connected");
    try {
      await this.opts.onConnect();
    } catch (error) {
      this.opts.log.warn({ err: String(error) }, "on-connect work failed; it is retried on the next connect");
    }
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    const delay = backoffDelayMs(this.attempt, this.opts.reconnectMinMs, this.opts.reconnectMaxMs, this.opts.random ?? Math.random);
    this.attempt += 1;
    this.opts.log.info({ delayMs: delay, attempt: this.attempt }, "mqtt reconnect scheduled");
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  /** HW-MSG-1: size-capped, schema-parsed, topic must be our own down/; anything else dropped, counted, logged once. */
  private onMessage(topic: string, payload: Buffer): void {
    const parsed = parseTopic(topic);
    if (!parsed || parsed.direction !== "down" || parsed.deviceId !== this.opts.deviceId) {
      this.drop("unexpected topic", { topic });
      return;
    }
    try {
      if (parsed.kind === "command") {
        const command = parsePayload(commandSchema, payload, "command");
        Promise.resolve(this.opts.onCommand(command)).catch((error) => this.opts.log.error({ err: String(error) }, "command handler failed"));
      } else {
        const challenge = parsePayload(challengeSchema, payload, "challenge");
        Promise.resolve(this.opts.onChallenge(challenge)).catch((error) => this.opts.log.error({ err: String(error) }, "challenge handler failed"));
      }
    } catch (error) {
      this.drop(error instanceof Error ? error.message : String(error), { topic });
    }
  }

  private drop(reason: string, fields: Record<string, unknown>): void {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + 1;
    this.once.warn(reason, fields);
  }

  private failPending(error: Error): void {
    for (const fail of [...this.pending]) fail(error);
  }
}
