/** Per-process figures from Linux /proc, for the agent benches (agent-footprint, guards). */
import { readFileSync } from "node:fs";

/** Linux USER_HZ on every target: /proc/<pid>/stat counts CPU time in 10 ms ticks. */
export const CLK_TCK = 100;

/** utime + stime of a running process, in clock ticks (fields 14 and 15 of /proc/<pid>/stat). Throws if it is gone. */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}
