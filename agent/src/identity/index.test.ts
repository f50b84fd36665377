import { chmodSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, deviceIdFromPublicKey } from "../../../shared/index.js";
import { tempDirPool } from "../testing/index.js";
import { loadOrCreateIdentity } from "./index.js";

describe("device identity", () => {
  const dirs = tempDirPool();
  afterEach(dirs.cleanup);
  const dir = () => dirs.make();

  it("creates a 0600 key on first start and reuses it afterwards", () => {
    const keyFile = join(dir(), "state", "device.key");
    const first = loadOrCreateIdentity(keyFile);
    expect(first.created).toBe(true);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(first.deviceId).toBe(deviceIdFromPublicKey(first.keyPair.publicKey));
    const content = readFileSync(keyFile, "utf8");
    const second = loadOrCreateIdentity(keyFile);
    expect(second.created).toBe(false);
    expect(second.deviceId).toBe(first.deviceId);
    expect(readFileSync(keyFile, "utf8")).toBe(content);
  });

  it("refuses a key readable by group or others", () => {
    const keyFile = join(dir(), "device.key");
    loadOrCreateIdentity(keyFile);
    chmodSync(keyFile, 0o644);
    expect(() => loadOrCreateIdentity(keyFile)).toThrow(expect.objectContaining({ option: "keyFile" }));
    chmodSync(keyFile, 0o640);
    expect(() => loadOrCreateIdentity(keyFile)).toThrow(ConfigError);
  });

  it("refuses a malformed key file", () => {
    const keyFile = join(dir(), "device.key");
    writeFileSync(keyFile, "too-short\n", { mode: 0o600 });
    expect(() => loadOrCreateIdentity(keyFile)).toThrow(expect.objectContaining({ option: "keyFile" }));
  });
});
