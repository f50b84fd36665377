import { chmod, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { fromBase64Url, generateKeyPair, toBase64Url } from "../../../shared/crypto/index.js";
import { ConfigError } from "../../../shared/errors/index.js";
import { COMMAND_KEY_FILE, loadOrCreateCommandKey, writeSecretFileAtomic } from "./index.js";
import { tempDirPool } from "../../../test/support/temp-dir.js";

const dirs = tempDirPool("keys");

let dir: string;
beforeEach(async () => {
  dir = dirs.make();
});
afterEach(async () => {
  dirs.cleanup();
});

describe("loadOrCreateCommandKey", () => {
  it("creates a 0600 key on first start and loads the same key later", async () => {
    const first = await loadOrCreateCommandKey(dir);
    expect(first.created).toBe(true);
    expect(first.path).toBe(join(dir, COMMAND_KEY_FILE));
    expect((await stat(first.path)).mode & 0o777).toBe(0o600);
    const text = await readFile(first.path, "utf8");
    expect(fromBase64Url(text.trim())).toEqual(first.keyPair.privateKey);
    expect(await readdir(dir)).toEqual([COMMAND_KEY_FILE]); // no temp file left behind

    const second = await loadOrCreateCommandKey(dir);
    expect(second.created).toBe(false);
    expect(second.keyPair.publicKey).toEqual(first.keyPair.publicKey);
  });

  it("loads a provisioned key", async () => {
    const keyPair = generateKeyPair();
    await writeFile(join(dir, COMMAND_KEY_FILE), toBase64Url(keyPair.privateKey), { mode: 0o600 });
    expect((await loadOrCreateCommandKey(dir)).keyPair.publicKey).toEqual(keyPair.publicKey);
  });

  it.each([0o640, 0o604, 0o660, 0o644])("refuses a key file with mode %o", async (mode) => {
    const path = join(dir, COMMAND_KEY_FILE);
    await writeFile(path, toBase64Url(generateKeyPair().privateKey));
    await chmod(path, mode);
    const error = await loadOrCreateCommandKey(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).option).toBe("HASHWARD_DATA_DIR");
    expect((error as ConfigError).message).toContain(path);
  });

  it.each([
    ["not base64url", "!!!"],
    ["too short", toBase64Url(new Uint8Array(16))],
  ])("refuses a key file that is %s", async (_what, content) => {
    await writeFile(join(dir, COMMAND_KEY_FILE), content, { mode: 0o600 });
    await expect(loadOrCreateCommandKey(dir)).rejects.toBeInstanceOf(ConfigError);
  });
});

describe("writeSecretFileAtomic", () => {
  it("replaces a file whole with the given mode", async () => {
    const path = join(dir, "admin.token");
    await writeSecretFileAtomic(path, "one\n");
    await writeSecretFileAtomic(path, "two\n");
    expect(await readFile(path, "utf8")).toBe("two\n");
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(["admin.token"]);
  });
});
