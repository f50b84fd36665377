/**
 * The one polling helper of the test kit (agent, control plane, end-to-end tests and benches alike). Not built on
 * vi.waitFor: the benches run this same support code under tsx (bench/board.ts -> qemu-board.ts), where vi.waitFor
 * throws "Vitest failed to access its internal state" (checked with vitest 4.1).
 */

/** How long to wait and how often to look (ms). */
export interface WaitOptions {
  /** Default 20,000 ms. */
  timeoutMs?: number;
  /** Default 50 ms. */
  intervalMs?: number;
}

/**
 * Polls `probe` until it returns a value other than undefined/false (a probe that throws counts as "not yet"),
 * and returns that value. At the deadline throws an Error naming `what` and the probe's last error.
 */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, { timeoutMs = 20_000, intervalMs = 50 }: WaitOptions = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ""}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
