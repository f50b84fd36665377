/** Per-process figures from Linux /proc, for the agent benches (agent-footprint, guards) and the plane benches (CPU over a burst). */
import { readdirSync, readFileSync } from "node:fs";

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

/** On-CPU time of each thread of a running process, in ns (/proc/<pid>/task/<tid>/schedstat, first field). */
export function threadCpuNs(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      out.set(Number(tid), Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]));
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return out;
}

/**
 * CPU time in ns a process used since `before` (threadCpuNs taken earlier): nanosecond resolution where
 * /proc/<pid>/stat counts 10 ms ticks, so an idle process's few milliseconds per second mean something. Summed over
 * the threads alive at both samples plus those started in between; a thread that ended in between loses its share
 * (Bun's threads live as long as the process).
 */
export function cpuNsSince(pid: number, before: ReadonlyMap<number, number>): number {
  let total = 0;
  for (const [tid, ns] of threadCpuNs(pid)) total += ns - (before.get(tid) ?? 0);
  return total;
}
