import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError } from "../../../shared/errors/index.js";
import { FakeDeviceSide } from "../broker/fake-device-side.js";
import { loadConfig, type ControlPlaneConfig } from "../config/index.js";
import type { ControlPlaneService } from "../service/types.js";
import { startPlane, type PlaneFactories } from "./index.js";

let dataDir: string;
const busy: Server[] = [];

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "hw-plane-"));
});
afterEach(async () => {
  await Promise.all(busy.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  await rm(dataDir, { recursive: true, force: true });
});

function config(env: Record<string, string> = {}): ControlPlaneConfig {
  return loadConfig({
    HASHWARD_HTTP_HOST: "127.0.0.1",
    HASHWARD_MQTT_HOST: "127.0.0.1",
    HASHWARD_HTTP_PORT: "0",
    HASHWARD_MQTT_PORT: "0",
    HASHWARD_DATA_DIR: dataDir,
    ...env,
  });
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
      const health = await fetch(`${plane.httpUrl}/healthz`);
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
    const devices = await fetch(`${first.httpUrl}/api/v1/devices`, { headers: { authorization: `Bearer ${token}` } });
    expect(devices.status).toBe(200);
    await first.close();

    const second = await startPlane(config(), silent);
    try {
      expect(second.adminToken).toBeUndefined();
      expect(second.database).toBe("pglite");
      expect(second.commandPublicKey).toEqual(first.commandPublicKey);
      const again = await fetch(`${second.httpUrl}/api/v1/devices`, { headers: { authorization: `Bearer ${token}` } });
      expect(again.status).toBe(200);
    } finally {
      await second.close();
    }
  });
});
