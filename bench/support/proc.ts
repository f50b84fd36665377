/** Per-process figures from Linux /proc, for the agent benches (agent-footprint, guards) and the plane benches (CPU over a burst). */
import { readFileSync } from "node:fs";

/** Linux USER_HZ on every target: /proc/<pid>/stat counts CPU time in 10 ms ticks. */
export const CLK_TCK = 100;

/** Starts measuring a running process's CPU: the returned function gives the ms of CPU (utime + stime) used since. */
export function cpuMeter(pid: number): () => number {
  const before = cpuTicks(pid);
  return () => ((cpuTicks(pid) - before) / CLK_TCK) * 1000;
}

/** utime + stime of a running process, in clock ticks (fields 14 and 15 of /proc/<pid>/stat). Throws if it is gone. */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}
