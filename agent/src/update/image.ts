/**
 * The simulated board's firmware image format ("hashward-firmware/1"): a bundle of the files of one slot's
 * `firmware/` tree. Simple on purpose: a real board writes a raw partition image instead, behind the same
 * `UpdateSlots.writeInactive(imageFile)` call.
 *
 *   bytes 0..5   magic "HWFW1\n"
 *   bytes 6..9   header length H, uint32 big-endian (max 1 MiB)
 *   next H bytes header, UTF-8 JSON: {"format":"hashward-firmware/1","files":[{"path":"bmminer","mode":493,"size":N},...]}
 *   then         the files' bytes, concatenated in header order; nothing after the last one
 *
 * Paths are relative to the slot's `firmware/` directory, `/`-separated, without `.`/`..`/empty segments,
 * unique; modes are permission bits only (no setuid). The image is TUF-verified before it is read, so this
 * parser is defence in depth: anything unexpected is an ImageFormatError and the slot is not written.
 */
import { closeSync, mkdirSync, openSync, readSync, writeSync, fchmodSync, fsyncSync } from "node:fs";
import { dirname, join } from "node:path";
import { z } from "zod";
import { HashwardError } from "../../../shared/index.js";

export class ImageFormatError extends HashwardError {
  override name = "ImageFormatError";
}

export const IMAGE_MAGIC = Buffer.from("HWFW1\n", "latin1");
export const IMAGE_FORMAT = "hashward-firmware/1";
const MAX_HEADER_BYTES = 1024 * 1024;
const MAX_FILES = 4096;

const relPath = z
  .string()
  .min(1)
  .max(512)
  .refine((p) => p.split("/").every((s) => s !== "" && s !== "." && s !== ".."), "must be a relative path without '.', '..' or empty segments");

const headerSchema = z.strictObject({
  format: z.literal(IMAGE_FORMAT),
  files: z
    .array(z.strictObject({ path: relPath, mode: z.number().int().min(0).max(0o777), size: z.number().int().nonnegative() }))
    .max(MAX_FILES),
});
export type ImageHeader = z.infer<typeof headerSchema>;

export interface ImageFile {
  path: string;
  content: string | Uint8Array;
  /** Permission bits; default 0o644. */
  mode?: number;
}

export function buildFirmwareImage(files: readonly ImageFile[]): Buffer {
  const bodies = files.map((f) => (typeof f.content === "string" ? Buffer.from(f.content, "utf8") : Buffer.from(f.content)));
  const header = headerSchema.parse({
    format: IMAGE_FORMAT,
    files: files.map((f, i) => ({ path: f.path, mode: f.mode ?? 0o644, size: bodies[i]!.byteLength })),
  });
  const headerBytes = Buffer.from(JSON.stringify(header), "utf8");
  const length = Buffer.alloc(4);
  length.writeUInt32BE(headerBytes.byteLength);
  return Buffer.concat([IMAGE_MAGIC, length, headerBytes, ...bodies]);
}

function readExactly(fd: number, length: number, position: number, what: string): Buffer {
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buffer, done, length - done, position + done);
    if (n === 0) throw new ImageFormatError(`image truncated in ${what}`);
    done += n;
  }
  return buffer;
}

/** Reads and checks the header; `size` is the image file's length (trailing bytes are refused). */
export function readImageHeader(fd: number, size: number): { header: ImageHeader; dataOffset: number } {
  if (size < IMAGE_MAGIC.byteLength + 4) throw new ImageFormatError(`image of ${size} bytes is too short`);
  const magic = readExactly(fd, IMAGE_MAGIC.byteLength, 0, "magic");
  if (!magic.equals(IMAGE_MAGIC)) throw new ImageFormatError("not a hashward-firmware/1 image (bad magic)");
  const headerLength = readExactly(fd, 4, IMAGE_MAGIC.byteLength, "header length").readUInt32BE(0);
  if (headerLength > MAX_HEADER_BYTES) throw new ImageFormatError(`image header of ${headerLength} bytes exceeds ${MAX_HEADER_BYTES}`);
  const dataOffset = IMAGE_MAGIC.byteLength + 4 + headerLength;
  let parsed: ImageHeader;
  try {
    parsed = headerSchema.parse(JSON.parse(readExactly(fd, headerLength, IMAGE_MAGIC.byteLength + 4, "header").toString("utf8")));
  } catch (cause) {
    if (cause instanceof ImageFormatError) throw cause;
    throw new ImageFormatError(`image header invalid: ${String(cause).slice(0, 300)}`, { cause });
  }
  const seen = new Set<string>();
  for (const f of parsed.files) {
    // A path that is both a file and a directory prefix, or twice, would make extraction order-dependent.
    if (seen.has(f.path)) throw new ImageFormatError(`image lists ${f.path} twice`);
    seen.add(f.path);
  }
  for (const f of parsed.files) {
    const parts = f.path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join("/");
      if (seen.has(prefix)) throw new ImageFormatError(`image lists ${prefix} as a file and as a directory`);
    }
  }
  const total = parsed.files.reduce((sum, f) => sum + f.size, 0);
  if (dataOffset + total !== size) throw new ImageFormatError(`image is ${size} bytes, header describes ${dataOffset + total}`);
  return { header: parsed, dataOffset };
}

/** Extracts the image at `imageFile` (of `size` bytes) into `destDir` (which must be new or empty). */
export function extractFirmwareImage(imageFile: string, size: number, destDir: string): ImageHeader {
  const fd = openSync(imageFile, "r");
  try {
    const { header, dataOffset } = readImageHeader(fd, size);
    let position = dataOffset;
    const chunk = Buffer.alloc(1024 * 1024);
    for (const f of header.files) {
      const target = join(destDir, ...f.path.split("/"));
      mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
      const out = openSync(target, "wx", f.mode);
      try {
        let left = f.size;
        while (left > 0) {
          const n = readSync(fd, chunk, 0, Math.min(chunk.byteLength, left), position);
          if (n === 0) throw new ImageFormatError(`image truncated in ${f.path}`);
          let written = 0;
          while (written < n) written += writeSync(out, chunk, written, n - written);
          position += n;
          left -= n;
        }
        fchmodSync(out, f.mode);
        fsyncSync(out);
      } finally {
        closeSync(out);
      }
    }
    return header;
  } finally {
    closeSync(fd);
  }
}
