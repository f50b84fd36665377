/**
 * Per-device ordering for device-side work, shared by both transports (the embedded aedes broker,
 * control-plane/src/broker/index.ts, and the RabbitMQ consumer, control-plane/src/broker/rabbitmq/transport.ts):
 * one device's messages and connect/disconnect events are handled one at a time, in arrival order, while
 * different devices proceed concurrently. A failed item does not stop the ones queued after it.
 *
 * Written here rather than taken from a library (p-queue, p-limit): what is needed is a map of promise chains
 * that empties itself, a dozen lines, and `drain()` for a graceful stop.
 */
export class DeviceWorkQueue {
  private readonly chains = new Map<string, Promise<void>>();

  /** Runs `work` after every earlier item of `deviceId` settled; resolves or rejects with `work`. */
  enqueue(deviceId: string, work: () => Promise<void>): Promise<void> {
    const previous = this.chains.get(deviceId) ?? Promise.resolve();
    const next = previous.then(work, work);
    this.chains.set(deviceId, next);
    void next
      .finally(() => {
        if (this.chains.get(deviceId) === next) this.chains.delete(deviceId);
      })
      .catch(() => undefined); // the caller handles `work`'s rejection through the returned promise
    return next;
  }

  /** Devices with work queued or running. */
  get size(): number {
    return this.chains.size;
  }

  /** Resolves once no device has work queued or running (work queued meanwhile is waited for too). */
  async drain(): Promise<void> {
    while (this.chains.size > 0) await Promise.allSettled([...this.chains.values()]);
  }
}
