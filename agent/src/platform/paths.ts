/**
 * Device paths (`/config/cgminer.conf`) to host paths under a platform root, the same for every Platform
 * (HW-Q-2 measures and guards what the agent resolves here; a path that leaves the root would measure or
 * rewrite a file of the host instead of the board's).
 */
import { resolve, sep } from "node:path";
import { HashwardError } from "../../../shared/index.js";

/** A Platform refused an operation or a path; the message names the offending value. */
export class PlatformError extends HashwardError {
  override name = "PlatformError";
}

/**
 * Checks that `devicePath` is a device path the agent may use: absolute, no `..` segment, no NUL byte.
 * Throws PlatformError naming the path otherwise.
 */
export function checkDevicePath(devicePath: string): void {
  if (!devicePath.startsWith("/") || devicePath.includes("\0") || devicePath.split("/").includes("..")) {
    throw new PlatformError(`device path ${JSON.stringify(devicePath)} must be absolute, without '..' or NUL`);
  }
}

/**
 * The host path of `devicePath` under `root` (an absolute, normalised host directory; "/" on a real board).
 * Throws PlatformError when the path is not a device path (checkDevicePath) or would leave `root`.
 */
export function resolveUnderRoot(root: string, devicePath: string): string {
  checkDevicePath(devicePath);
  const hostPath = resolve(root, `.${devicePath}`);
  if (hostPath !== root && !hostPath.startsWith(root === sep ? sep : root + sep)) {
    throw new PlatformError(`device path ${JSON.stringify(devicePath)} escapes the platform root ${root}`);
  }
  return hostPath;
}
