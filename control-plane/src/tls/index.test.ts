import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync, rmSync, statSync, writeFileSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError } from "../../../shared/errors/index.js";
import { caCertHash } from "../../../shared/tls/index.js";
import { issueServerCertificate, loadOrCreateCa, startPlaneTls } from "./index.js";
import { tempDirPool } from "../../../test/support/temp-dir.js";

const dirs = tempDirPool("tls");

let dir: string;
beforeEach(() => {
  dir = dirs.make();
});
afterEach(() => dirs.cleanup());

const silent = pino({ level: "silent" });
const settings = { certLifetimeMs: 60_000, renewCheckMs: 60_000 };

function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"]);
    return true;
  } catch {
    return false;
  }
}

describe("the plane's certificate authority (HW-TLS-1, HW-PIN-2)", () => {
  it("is created once with a 0600 key and reloaded with the same pin", async () => {
    const { ca, created } = await loadOrCreateCa(dir);
    expect(created).toBe(true);
    expect(statSync(join(dir, "ca.key")).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, "ca.pem"), "utf8")).toBe(ca.certPem);
    const again = await loadOrCreateCa(dir);
    expect(again.created).toBe(false);
    expect(again.ca.caCertHash).toBe(ca.caCertHash);
  });

  it.skipIf(!hasOpenssl())("pins the same hash as kubeadm's openssl recipe (sha256 of the DER SubjectPublicKeyInfo)", async () => {
    const { ca } = await loadOrCreateCa(dir);
    const pubkey = execFileSync("openssl", ["x509", "-in", join(dir, "ca.pem"), "-pubkey", "-noout"]);
    const der = execFileSync("openssl", ["pkey", "-pubin", "-outform", "der"], { input: pubkey });
    const hex = execFileSync("openssl", ["dgst", "-sha256", "-hex"], { input: der }).toString().trim().split(" ").pop();
    expect(ca.caCertHash).toBe(`sha256:${hex}`);
  });

  it("issues server certificates for the configured names, signed by the CA", async () => {
    const { ca } = await loadOrCreateCa(dir);
    const pair = await issueServerCertificate(ca, ["plane.farm.example", "10.0.0.7", "0.0.0.0"], 60_000);
    const leaf = new X509Certificate(pair.cert);
    expect(leaf.subjectAltName).toContain("DNS:plane.farm.example");
    expect(leaf.subjectAltName).toContain("IP Address:10.0.0.7");
    expect(leaf.subjectAltName).not.toContain("0.0.0.0");
    expect(leaf.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    expect(leaf.checkHost("plane.farm.example")).toBe("plane.farm.example");
  });

  it.each([
    ["ca.pem without ca.key", "ca.key"],
    ["ca.key without ca.pem", "ca.pem"],
  ])("refuses %s, naming HASHWARD_DATA_DIR, and writes nothing", async (_what, removed) => {
    await loadOrCreateCa(dir);
    rmSync(join(dir, removed));
    const error = await loadOrCreateCa(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).option).toBe("HASHWARD_DATA_DIR");
    expect(() => statSync(join(dir, removed))).toThrow();
  });

  it("refuses a CA key that others may read", async () => {
    await loadOrCreateCa(dir);
    chmodSync(join(dir, "ca.key"), 0o644);
    await expect(loadOrCreateCa(dir)).rejects.toThrow(/chmod 600/);
  });

  it("uses operator-provided files, all three or none, and checks the certificate was issued by the CA", async () => {
    const { ca } = await loadOrCreateCa(join(dir));
    const pair = await issueServerCertificate(ca, ["plane.example"], 60_000);
    const op = dirs.make("tls-op");
    writeFileSync(join(op, "cert.pem"), pair.cert.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n");
    writeFileSync(join(op, "key.pem"), pair.key);
    writeFileSync(join(op, "ca.pem"), ca.certPem);
    const files = { certFile: join(op, "cert.pem"), keyFile: join(op, "key.pem"), caFile: join(op, "ca.pem") };
    const tls = await startPlaneTls(op, [], { ...settings, ...files }, silent);
    expect(tls.ca.caCertHash).toBe(caCertHash(ca.certPem));
    expect(tls.current().cert).toContain(ca.certPem.trim()); // the chain carries the CA
    tls.close();

    const missing = await startPlaneTls(op, [], { ...settings, certFile: files.certFile, keyFile: files.keyFile }, silent).catch((e: unknown) => e);
    expect((missing as ConfigError).option).toBe("HASHWARD_TLS_CA_FILE");
    const other = await loadOrCreateCa(dirs.make("tls-other"));
    writeFileSync(join(op, "other-ca.pem"), other.ca.certPem);
    const foreign = await startPlaneTls(op, [], { ...settings, ...files, caFile: join(op, "other-ca.pem") }, silent).catch((e: unknown) => e);
    expect(foreign).toBeInstanceOf(ConfigError);
    expect((foreign as ConfigError).message).toMatch(/not issued by this CA/);
  });
});

describe("server certificate renewal (HW-TLS-2)", () => {
  it("swaps the new certificate into every listener even when one of them throws, and says which failed", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: "info" }, { write: (text: string) => void lines.push(JSON.parse(text) as Record<string, unknown>) });
    let clock = Date.now();
    const tls = await startPlaneTls(dir, [], settings, logger, () => clock);
    try {
      const first = tls.current().cert;
      const received: string[] = [];
      tls.onRenew(() => {
        throw new Error("this listener cannot swap (as Bun's https.Server)");
      });
      tls.onRenew((pair) => received.push(pair.cert));
      await tls.renewIfDue();
      expect(received).toEqual([]); // a full lifetime left: nothing renewed
      clock += 45_000; // a quarter of the 60 s lifetime left
      await tls.renewIfDue();
      expect(tls.current().cert).not.toBe(first);
      expect(received).toEqual([tls.current().cert]);
      expect(lines.find((l) => l.msg === "TLS server certificate renewed but not swapped into a listener")).toMatchObject({ level: 50, listener: 0 });
      expect(lines.find((l) => l.msg === "TLS server certificate renewed")).toMatchObject({ listeners: 2, swapped: 1 });
    } finally {
      tls.close();
    }
  });
});
