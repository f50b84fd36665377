import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { tempDirPool } from "../testing/index.js";
import { buildFirmwareImage, extractFirmwareImage, ImageFormatError } from "./image.js";

describe("hashward-firmware/1 image", () => {
  const dirs = tempDirPool("image");
  afterEach(dirs.cleanup);
  const dir = () => dirs.make();

  it("round-trips files with their modes", () => {
    const d = dir();
    const image = buildFirmwareImage([
      { path: "bmminer", content: "#!/bin/sh\n", mode: 0o755 },
      { path: "lib/libcgminer.so", content: new Uint8Array([0x7f, 0x45, 0x4c, 0x46]) },
      { path: "etc/empty", content: "" },
    ]);
    writeFileSync(join(d, "img"), image);
    const header = extractFirmwareImage(join(d, "img"), image.byteLength, join(d, "out"));
    expect(header.files.map((f) => f.path)).toEqual(["bmminer", "lib/libcgminer.so", "etc/empty"]);
    expect(readFileSync(join(d, "out/bmminer"), "utf8")).toBe("#!/bin/sh\n");
    expect(statSync(join(d, "out/bmminer")).mode & 0o777).toBe(0o755);
    expect([...readFileSync(join(d, "out/lib/libcgminer.so"))]).toEqual([0x7f, 0x45, 0x4c, 0x46]);
    expect(statSync(join(d, "out/etc/empty")).size).toBe(0);
  });

  it("refuses escaping paths, bad magic, trailing or missing bytes", () => {
    expect(() => buildFirmwareImage([{ path: "../etc/passwd", content: "x" }])).toThrow();
    expect(() => buildFirmwareImage([{ path: "/abs", content: "x" }])).toThrow();
    const d = dir();
    const good = buildFirmwareImage([{ path: "a", content: "hello" }]);
    const cases: [string, Buffer][] = [
      ["magic", Buffer.concat([Buffer.from("XXXXX\n"), good.subarray(6)])],
      ["trailing", Buffer.concat([good, Buffer.from("!")])],
      ["truncated", good.subarray(0, good.byteLength - 1)],
    ];
    for (const [name, bytes] of cases) {
      writeFileSync(join(d, name), bytes);
      expect(() => extractFirmwareImage(join(d, name), bytes.byteLength, join(d, `out-${name}`)), name).toThrow(ImageFormatError);
    }
    // A hand-made header with a traversal path is refused before anything is written.
    const header = Buffer.from(JSON.stringify({ format: "hashward-firmware/1", files: [{ path: "../x", mode: 420, size: 1 }] }));
    const len = Buffer.alloc(4);
    len.writeUInt32BE(header.byteLength);
    const evil = Buffer.concat([Buffer.from("HWFW1\n"), len, header, Buffer.from("x")]);
    writeFileSync(join(d, "evil"), evil);
    expect(() => extractFirmwareImage(join(d, "evil"), evil.byteLength, join(d, "out-evil"))).toThrow(ImageFormatError);
  });
});
