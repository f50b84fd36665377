import type { Message } from "amqplib";
import { describe, expect, it } from "vitest";
import { AckBatcher, type AckChannel } from "./ack-batch.js";

/** Records the frames a channel would send: ack/nack with their delivery tag and `multiple` flag. */
class RecordingChannel implements AckChannel {
  frames: string[] = [];
  ack(msg: Message, allUpTo?: boolean): void {
    this.frames.push(`ack ${msg.fields.deliveryTag}${allUpTo ? " multiple" : ""}`);
  }
  nack(msg: Message, allUpTo?: boolean, requeue?: boolean): void {
    this.frames.push(`nack ${msg.fields.deliveryTag}${allUpTo ? " multiple" : ""}${requeue ? " requeue" : ""}`);
  }
}

function delivery(tag: number): Message {
  return { fields: { deliveryTag: tag }, properties: {}, content: Buffer.alloc(0) } as unknown as Message;
}

function setup(count: number) {
  const channel = new RecordingChannel();
  const errors: unknown[] = [];
  const batcher = new AckBatcher(channel, (error) => errors.push(error));
  const msgs = Array.from({ length: count }, (_, i) => delivery(i + 1));
  for (const msg of msgs) batcher.received(msg);
  return { channel, batcher, msgs, errors };
}

describe("AckBatcher (HW-BROKER-4: ack only after commit, in batches)", () => {
  it("acks the deliveries settled in one turn with one multiple ack", async () => {
    const { channel, batcher, msgs } = setup(5);
    for (const msg of msgs) batcher.ack(msg);
    expect(channel.frames).toEqual([]); // nothing before the turn ends
    await new Promise((resolve) => setImmediate(resolve));
    expect(channel.frames).toEqual(["ack 5 multiple"]);
    expect(batcher.size).toBe(0);
  });

  it("never acks a delivery still in work: the settled ones behind it go out one by one", () => {
    const { channel, batcher, msgs } = setup(5);
    for (const msg of [msgs[0]!, msgs[1]!, msgs[3]!, msgs[4]!]) batcher.ack(msg);
    batcher.flush();
    expect(channel.frames).toEqual(["ack 2 multiple", "ack 4", "ack 5"]);
    expect(batcher.size).toBe(1);
    batcher.ack(msgs[2]!);
    batcher.flush();
    expect(channel.frames.at(-1)).toBe("ack 3 multiple");
    expect(batcher.size).toBe(0);
  });

  it("requeues at once and alone; a later multiple ack covers only settled deliveries", () => {
    const { channel, batcher, msgs } = setup(3);
    batcher.requeue(msgs[0]!);
    expect(channel.frames).toEqual(["nack 1 requeue"]);
    batcher.ack(msgs[1]!);
    batcher.ack(msgs[2]!);
    batcher.flush();
    expect(channel.frames).toEqual(["nack 1 requeue", "ack 3 multiple"]);
  });

  it("reports a flush that fails (channel closed) instead of throwing out of the timer", async () => {
    const { batcher, msgs, errors } = setup(1);
    const closed = new AckBatcher(
      {
        ack: () => {
          throw new Error("Channel closed");
        },
        nack: () => undefined,
      },
      (error) => errors.push(error),
    );
    closed.received(msgs[0]!);
    closed.ack(msgs[0]!);
    await new Promise((resolve) => setImmediate(resolve));
    expect(errors).toHaveLength(1);
    expect(batcher.size).toBe(1);
  });
});
