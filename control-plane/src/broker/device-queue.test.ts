import { describe, expect, it } from "vitest";
import { DeviceWorkQueue } from "./device-queue.js";

/** A promise with its resolve/reject exposed. */
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

describe("DeviceWorkQueue: one device's work in order, devices side by side", () => {
  it("runs a device's items one at a time in arrival order; another device is not held up", async () => {
    const queue = new DeviceWorkQueue();
    const order: string[] = [];
    const gate = deferred();
    const a1 = queue.enqueue("a", async () => {
      order.push("a1 start");
      await gate.promise;
      order.push("a1 end");
    });
    const a2 = queue.enqueue("a", async () => void order.push("a2"));
    await queue.enqueue("b", async () => void order.push("b1"));
    expect(order).toEqual(["a1 start", "b1"]); // b ran while a1 waits; a2 waits for a1
    gate.resolve();
    await Promise.all([a1, a2]);
    expect(order).toEqual(["a1 start", "b1", "a1 end", "a2"]);
    expect(queue.size).toBe(0);
  });

  it("a failed item rejects its own promise only; the next item of that device still runs", async () => {
    const queue = new DeviceWorkQueue();
    const failed = queue.enqueue("a", async () => {
      throw new Error("database unreachable");
    });
    const ran: string[] = [];
    const next = queue.enqueue("a", async () => void ran.push("a2"));
    await expect(failed).rejects.toThrow("database unreachable");
    await next;
    expect(ran).toEqual(["a2"]);
  });

  it("drain() waits for work queued while it waits", async () => {
    const queue = new DeviceWorkQueue();
    const done: string[] = [];
    const gate = deferred();
    void queue.enqueue("a", async () => {
      await gate.promise;
      void queue.enqueue("b", async () => void done.push("b"));
      done.push("a");
    });
    const drained = queue.drain().then(() => done.push("drained"));
    gate.resolve();
    await drained;
    expect(done).toEqual(["a", "b", "drained"]);
  });
});
