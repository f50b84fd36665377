/**
 * A suite that needs something this machine lacks (a built binary, qemu, an external service) is skipped SAYING
 * WHY: the reason is part of the suite's name, so every reporter shows it (the verbose listing prints
 * "↓ <name> (skipped: <reason>) > <test>"), and it is printed once on stderr while the file loads.
 */
import { describe } from "vitest";

/**
 * `describe(name, fn)` when `missing` is null; otherwise the suite is skipped and named
 * `<name> (skipped: <missing>)`. `missing` says what is absent and how to provide it.
 */
export function describeUnless(missing: string | null, name: string, fn: () => void): void {
  if (missing === null) {
    describe(name, fn);
    return;
  }
  console.warn(`skipping "${name}": ${missing}`);
  describe.skip(`${name} (skipped: ${missing})`, fn);
}
