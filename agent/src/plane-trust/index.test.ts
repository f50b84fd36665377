import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError } from "../../../shared/index.js";
import { isTlsVerificationError } from "../../../shared/tls/index.js";
import { issueServerCertificate, loadOrCreateCa, type CertificateAuthority } from "../../../control-plane/src/tls/index.js";
import { establishPlaneTrust, PLANE_CA_FILE, PlaneIdentityError, sameEndpoint, type PlaneTrustConfig } from "./index.js";
import { tempDirPool } from "../../../test/support/temp-dir.js";

const dirs = tempDirPool("trust");

let dir: string;
const servers: Server[] = [];
beforeEach(() => {
  dir = dirs.make();
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
  dirs.cleanup();
});

interface TlsServer {
  url: string;
  ca: CertificateAuthority;
  /** Every request the server received, as "METHOD path". */
  requests: string[];
}

/** An HTTPS server with its own CA, serving `servedCa` (default its own) at /ca.pem and 200 elsewhere. */
async function tlsServer(servedCa?: string): Promise<TlsServer> {
  const { ca } = await loadOrCreateCa(mkdtempSync(join(dir, "ca-")));
  const pair = await issueServerCertificate(ca, ["127.0.0.1"], 60_000);
  const requests: string[] = [];
  const server = createServer({ cert: pair.cert, key: pair.key }, (req, res) => {
    requests.push(`${req.method} ${req.url}`);
    if (req.url === "/ca.pem") res.end(servedCa ?? ca.certPem);
    else res.end("{}");
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, ca, requests };
}

function config(overrides: Partial<PlaneTrustConfig>): PlaneTrustConfig {
  return { controlPlaneUrl: "https://127.0.0.1:1", stateDir: dir, trustOnFirstUse: false, allowPlaintext: false, ...overrides };
}

const lines: Array<{ level: number; msg: string }> = [];
const log = pino({ level: "info" }, { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) });

describe("establishPlaneTrust (HW-PIN-2, HW-TLS-1)", () => {
  it.each([
    ["http://127.0.0.1:8080", "controlPlaneUrl"],
  ])("refuses plaintext %s unless allowPlaintext, naming the option", async (url, option) => {
    const error = await establishPlaneTrust({ config: config({ controlPlaneUrl: url }), log }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).option).toBe(option);
    const allowed = await establishPlaneTrust({ config: config({ controlPlaneUrl: url, allowPlaintext: true }), log });
    expect(allowed.source).toBe("plaintext");
    expect(lines.some((l) => l.level === 40 && l.msg.startsWith("PLAINTEXT"))).toBe(true);
  });

  it("refuses to start without a way to authenticate the plane (no pin, CA file, stored CA or trust-on-first-use)", async () => {
    const plane = await tlsServer();
    const error = await establishPlaneTrust({ config: config({ controlPlaneUrl: plane.url }), log }).catch((e: unknown) => e);
    expect((error as ConfigError).option).toBe("caCertHash");
    expect(plane.requests).toEqual([]); // nothing was sent
  });

  it("takes the CA whose key matches the pin, stores it, and then trusts only it", async () => {
    const plane = await tlsServer();
    const trust = await establishPlaneTrust({ config: config({ controlPlaneUrl: plane.url, caCertHash: plane.ca.caCertHash }), log });
    expect(trust.source).toBe("pin");
    expect(readFileSync(join(dir, PLANE_CA_FILE), "utf8")).toBe(plane.ca.certPem);
    expect((await trust.fetch(`${plane.url}/api/v1/enroll`, { method: "POST", body: "{}" })).status).toBe(200);
    // A server with another CA's certificate at the same kind of address is refused before the request goes out.
    const rogue = await tlsServer();
    const refused = await trust.fetch(`${rogue.url}/api/v1/enroll`, { method: "POST", body: "{}" }).catch((e: unknown) => e);
    expect(isTlsVerificationError(refused)).toBe(true);
    expect(rogue.requests).toEqual([]);
    // Next start: the stored CA, no download.
    const stored = await establishPlaneTrust({ config: config({ controlPlaneUrl: plane.url, caCertHash: plane.ca.caCertHash }), log, downloadCa: () => Promise.reject(new Error("no download expected")) });
    expect(stored.source).toBe("stored");
  });

  it("gives a server that does not prove the pinned CA nothing: an error naming its address, nothing stored", async () => {
    const plane = await tlsServer();
    const rogue = await tlsServer();
    const error = await establishPlaneTrust({ config: config({ controlPlaneUrl: rogue.url, caCertHash: plane.ca.caCertHash }), log }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PlaneIdentityError);
    expect((error as PlaneIdentityError).address).toBe(`${rogue.url}/ca.pem`);
    expect(rogue.requests).toEqual(["GET /ca.pem"]);
    expect(existsSync(join(dir, PLANE_CA_FILE))).toBe(false);
  });

  it("a rogue server that serves the real CA file still cannot pass the handshake with the pinned CA", async () => {
    const plane = await tlsServer();
    const rogue = await tlsServer(plane.ca.certPem);
    const trust = await establishPlaneTrust({ config: config({ controlPlaneUrl: rogue.url, caCertHash: plane.ca.caCertHash }), log });
    const refused = await trust.fetch(`${rogue.url}/api/v1/enroll`, { method: "POST", body: "{}" }).catch((e: unknown) => e);
    expect(isTlsVerificationError(refused)).toBe(true);
    expect(rogue.requests).toEqual(["GET /ca.pem"]);
  });

  it("trust on first use only when asked, logged at warn", async () => {
    const plane = await tlsServer();
    const trust = await establishPlaneTrust({ config: config({ controlPlaneUrl: plane.url, trustOnFirstUse: true }), log });
    expect(trust.source).toBe("trust-on-first-use");
    expect(lines.some((l) => l.level === 40 && l.msg.startsWith("TRUST ON FIRST USE"))).toBe(true);
  });

  it("never replaces a stored CA with another pin", async () => {
    const plane = await tlsServer();
    await establishPlaneTrust({ config: config({ controlPlaneUrl: plane.url, caCertHash: plane.ca.caCertHash }), log });
    const other = await tlsServer();
    const error = await establishPlaneTrust({ config: config({ controlPlaneUrl: other.url, caCertHash: other.ca.caCertHash }), log }).catch((e: unknown) => e);
    expect((error as ConfigError).option).toBe("caCertHash");
    expect(readFileSync(join(dir, PLANE_CA_FILE), "utf8")).toBe(plane.ca.certPem);
  });
});

describe("sameEndpoint", () => {
  it.each([
    ["mqtts://127.0.0.1:8883", "mqtts://127.0.0.1", true],
    ["mqtts://Plane.example:1884", "mqtts://plane.example:1884", true],
    ["mqtts://127.0.0.1:1883", "mqtts://127.0.0.1:1884", false],
    ["mqtt://127.0.0.1:1883", "mqtts://127.0.0.1:1883", false],
    ["mqtts://a.example:1883", "mqtts://b.example:1883", false],
  ])("%s vs %s -> %s", (a, b, same) => expect(sameEndpoint(a, b)).toBe(same));
});
