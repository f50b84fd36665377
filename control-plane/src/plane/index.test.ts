import { readFile, stat } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ConfigError } from "../../../shared/errors/index.js";
import { FakeDeviceSide } from "../broker/testing/fake-device-side.js";
import type { ControlPlaneConfig } from "../config/index.js";
import type { ControlPlaneService } from "../service/index.js";
import { startPlane, type PlaneFactories } from "./index.js";
import { testPlaneConfig } from "./testing/index.js";
import { readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { connect as tlsConnect } from "node:tls";
import { Writable } from "node:stream";
import { caCertHash, httpsFetch } from "../../../shared/tls/index.js";
import { tempDirPool } from "../../../test/support/temp-dir.js";

/** fetch trusting the plane's own CA from its data dir, as the CLI does. */
const planeFetch = (url: string, init?: RequestInit) => httpsFetch({ ca: readFileSync(join(dataDir, "ca.pem"), "utf8") })(url, init);

/** The serial number of the certificate a fresh TLS handshake with 127.0.0.1:port shows. */
function servedSerial(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: "127.0.0.1", port, ca }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.end();
    });
    socket.on("error", reject);
  });
}

const dirs = tempDirPool("plane");

let dataDir: string;
const busy: Server[] = [];

beforeEach(async () => {
  dataDir = dirs.make();
});
afterEach(async () => {
  await Promise.all(busy.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  dirs.cleanup();
});

function config(env: Record<string, string> = {}): ControlPlaneConfig {
  return testPlaneConfig(dataDir, env);
}

async function occupiedPort(): Promise<number> {
  const server = createServer();
  busy.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (typeof address !== "object" || address === null) throw new Error("no address");
  return address.port;
}

/** Services without a database: enough to start and stop the plane. */
function fakeFactories(closed: string[]): PlaneFactories {
  return {
    async openDatabase() {
      return { db: null, dialect: "pglite", close: async () => void closed.push("db") };
    },
    createServices() {
      const service = new Proxy({} as ControlPlaneService, {
        get: () => () => Promise.reject(new Error("fake service")),
      });
      return { service, deviceSide: new FakeDeviceSide(), ensureAdminToken: async () => "hwa_fake-admin-token" };
    },
  };
}

const silent = pino({ level: "silent" });

describe("startPlane", () => {
  it("starts on ephemeral ports, writes the admin token 0600 once, and closes", async () => {
    const closed: string[] = [];
    const plane = await startPlane(config(), silent, fakeFactories(closed));
    try {
      expect(plane.httpPort).toBeGreaterThan(0);
      expect(plane.mqttPort).toBeGreaterThan(0);
      expect(plane.adminToken).toBe("hwa_fake-admin-token");
      expect(await readFile(plane.adminTokenFile, "utf8")).toBe("hwa_fake-admin-token\n");
      expect((await stat(plane.adminTokenFile)).mode & 0o777).toBe(0o600);
      expect((await stat(join(dataDir, "command-signing.key"))).mode & 0o777).toBe(0o600);
      expect(plane.httpUrl).toMatch(/^https:/);
      expect(plane.mqttUrl).toMatch(/^mqtts:/);
      const health = await planeFetch(`${plane.httpUrl}/healthz`);
      expect(health.status).toBe(200);
    } finally {
      await plane.close();
      await plane.close();
    }
    expect(closed).toEqual(["db"]);
  });

  it.each([
    ["HASHWARD_HTTP_PORT"],
    ["HASHWARD_MQTT_PORT"],
  ])("refuses a busy %s with a ConfigError naming it, and releases what it opened", async (option) => {
    const port = await occupiedPort();
    const closed: string[] = [];
    const error = await startPlane(config({ [option]: String(port) }), silent, fakeFactories(closed)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).option).toBe(option);
    expect((error as ConfigError).message).toBe(`${option}=${port}: port already in use`);
    expect(closed).toEqual(["db"]);
  });

  it("runs with the real database and services, and restarts on the same data folder", async () => {
    const first = await startPlane(config(), silent);
    const token = first.adminToken;
    expect(token).toBeTruthy();
    const devices = await planeFetch(`${first.httpUrl}/api/v1/devices`, { headers: { authorization: `Bearer ${token}` } });
    expect(devices.status).toBe(200);
    await first.close();

    const second = await startPlane(config(), silent);
    try {
      expect(second.adminToken).toBeUndefined();
      expect(second.database).toBe("pglite");
      expect(second.commandPublicKey).toEqual(first.commandPublicKey);
      expect(second.caCertHash).toBe(first.caCertHash); // the CA is made once: pinned agents keep trusting it
      const again = await planeFetch(`${second.httpUrl}/api/v1/devices`, { headers: { authorization: `Bearer ${token}` } });
      expect(again.status).toBe(200);
    } finally {
      await second.close();
    }
  });

  // HW-TLS-1
  it("serves HTTPS with its own CA by default: ca.pem written, CA key 0600, plaintext HTTP gets no answer", async () => {
    const plane = await startPlane(config(), silent, fakeFactories([]));
    try {
      const ca = readFileSync(join(dataDir, "ca.pem"), "utf8");
      expect((await stat(join(dataDir, "ca.key"))).mode & 0o777).toBe(0o600);
      expect(plane.caCertHash).toBe(caCertHash(ca));
      const served = new X509Certificate(readFileSync(join(dataDir, "ca.pem")));
      expect(served.ca).toBe(true);
      // SANs: loopback names and the listen address, so agents verify the host name as usual.
      const leaf = await new Promise<X509Certificate>((resolve, reject) => {
        const socket = tlsConnect({ host: "127.0.0.1", port: plane.httpPort, ca }, () => {
          resolve(new X509Certificate(socket.getPeerCertificate().raw));
          socket.end();
        });
        socket.on("error", reject);
      });
      expect(leaf.subjectAltName).toContain("IP Address:127.0.0.1");
      expect(leaf.subjectAltName).toContain("DNS:localhost");
      expect(leaf.checkIssued(served)).toBe(true);
      // Without the CA the certificate is not trusted; over plain HTTP there is no answer at all.
      await expect(httpsFetch()(`${plane.httpUrl}/healthz`)).rejects.toThrow();
      await expect(fetch(`http://127.0.0.1:${plane.httpPort}/healthz`)).rejects.toThrow();
      // The CA is public (agents check it against their pin); the bootstrap answer needs a login.
      const caRoute = await planeFetch(`${plane.httpUrl}/ca.pem`);
      expect(await caRoute.text()).toBe(ca);
    } finally {
      await plane.close();
    }
  });

  it("runs plaintext only with HASHWARD_TLS=off, and says so at warn on every start", async () => {
    for (let start = 0; start < 2; start += 1) {
      const lines: Array<{ level: number; msg: string }> = [];
      const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string }), done()) });
      const plane = await startPlane(config({ HASHWARD_TLS: "off" }), pino({ level: "info" }, sink), fakeFactories([]));
      try {
        expect(plane.httpUrl).toMatch(/^http:/);
        expect(plane.caCertHash).toBeNull();
        expect((await fetch(`${plane.httpUrl}/healthz`)).status).toBe(200);
        expect(lines.filter((l) => l.level === 40 && l.msg.startsWith("PLAINTEXT"))).toHaveLength(1);
      } finally {
        await plane.close();
      }
    }
  });

  it("renews its server certificate before expiry without dropping an open connection", async () => {
    const plane = await startPlane(config({ HASHWARD_TLS_CERT_TTL_MS: "3000", HASHWARD_TLS_RENEW_CHECK_MS: "100" }), silent, fakeFactories([]));
    try {
      const ca = readFileSync(join(dataDir, "ca.pem"), "utf8");
      const first = await servedSerial(plane.httpPort, ca);
      const open = tlsConnect({ host: "127.0.0.1", port: plane.mqttPort, ca });
      await new Promise<void>((resolve, reject) => open.once("secureConnect", resolve).once("error", reject));
      let closed = false;
      open.on("close", () => (closed = true));
      await vi.waitFor(async () => expect(await servedSerial(plane.httpPort, ca)).not.toBe(first), { timeout: 20_000, interval: 200 });
      expect(await servedSerial(plane.mqttPort, ca)).not.toBe(first);
      expect(closed).toBe(false);
      open.destroy();
    } finally {
      await plane.close();
    }
  });
});
