/**
 * Publishes signed releases to a real control plane the way an operator does, through the release CLI
 * (control-plane/src/release, run in-process with the real fetch): offline keys, root v1 with the plane's online
 * keys, then `sign` + `upload` per release. Images are simulated-board firmware bundles (agent/src/update/image.ts).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildFirmwareImage } from "../../agent/src/update/index.js";
import { simulatedFirmwareFiles } from "../../agent/src/platform/simulated.js";
import { runRelease } from "../../control-plane/src/release/index.js";
import { planeFetch } from "./api.js";
import type { ApiClient } from "./api.js";

export interface Releaser {
  dir: string;
  repo: string;
  /** The trusted root a device is provisioned with (`update.trustedRootFile`). */
  rootFile: string;
  publish(release: {
    name: string;
    model: string;
    models?: string[];
    version: string;
    healthy?: boolean;
    reference?: unknown[];
    /** More files in the image (e.g. a large blob for the update benchmark). */
    extraFiles?: Array<{ path: string; content: string | Buffer }>;
    /**
     * The image's bytes as they are, instead of a simulated-board bundle (`healthy` and `extraFiles` then do not
     * apply): e.g. a root-filesystem slot image for a U-Boot board (test/support/qemu-board.ts).
     */
    image?: Buffer;
  }): Promise<{ sha256: string; imageFile: string }>;
}

async function release(args: string[]): Promise<Record<string, unknown>> {
  let out = "";
  let err = "";
  const code = await runRelease(args, { fetch: (url, init) => planeFetch(url, init), stdout: (t) => void (out += t), stderr: (t) => void (err += t) });
  if (code !== 0) throw new Error(`release ${args.join(" ")} exited ${code}: ${err}`);
  return JSON.parse(out) as Record<string, unknown>;
}

/** A simulated-board firmware bundle (agent/src/update/image.ts) for `model` at `version`. */
function simulatedImage(model: string, version: string, healthy: boolean, extraFiles: Array<{ path: string; content: string | Buffer }>): Buffer {
  const files: Array<{ path: string; content: string | Buffer; mode?: number }> = Object.entries(simulatedFirmwareFiles(model, version)).map(([path, content]) => ({
    path,
    content,
    ...(path === "bmminer" ? { mode: 0o755 } : {}),
  }));
  // The simulated board's health check reads firmware/etc/selftest: anything but "pass" fails the trial boot.
  if (!healthy) files.push({ path: "etc/selftest", content: "fail: hashboard 2 not detected\n" });
  files.push(...extraFiles);
  return buildFirmwareImage(files);
}

export async function createReleaser(dir: string, admin: ApiClient): Promise<Releaser> {
  const keys = join(dir, "keys");
  const repo = join(dir, "repo");
  const tokenFile = join(dir, "admin.token");
  mkdirSync(dir, { recursive: true });
  writeFileSync(tokenFile, `${admin.token}\n`, { mode: 0o600 });
  await release(["keys", "init", "--dir", keys, "--root-keys", "3", "--root-threshold", "2", "--targets-keys", "2", "--targets-threshold", "2"]);
  writeFileSync(join(dir, "online-keys.json"), JSON.stringify(await admin.get("/api/v1/tuf/online-keys")));
  await release(["root", "init", "--keys", keys, "--online-keys", join(dir, "online-keys.json"), "--repo", repo]);
  await release(["upload", "--url", admin.baseUrl, "--token-file", tokenFile, "--repo", repo]);
  return {
    dir,
    repo,
    rootFile: join(repo, "1.root.json"),
    async publish({ name, model, models, version, healthy = true, reference = [], extraFiles = [], image: raw }) {
      const image = join(dir, `${name}.img`);
      writeFileSync(image, raw ?? simulatedImage(model, version, healthy, extraFiles));
      const referenceFile = join(dir, `${name}.reference.json`);
      writeFileSync(referenceFile, JSON.stringify(reference));
      const signed = await release(["sign", "--keys", keys, "--repo", repo, "--image", image, "--name", name, "--version", version, "--models", (models ?? [model]).join(","), "--reference", referenceFile]);
      await release(["upload", "--url", admin.baseUrl, "--token-file", tokenFile, "--repo", repo]);
      return { sha256: (signed.target as { sha256: string }).sha256, imageFile: image };
    },
  };
}
