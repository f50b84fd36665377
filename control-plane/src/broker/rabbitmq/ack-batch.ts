/**
 * Acknowledging ingest deliveries in batches (HW-BROKER-4). Each AMQP ack to a quorum queue is a settle command in
 * the queue's Raft log, one per frame; a burst of 6,000 heartbeats settled one by one is 6,000 log entries on the
 * broker, which is the bottleneck on a small machine. Deliveries settled within one event-loop turn are acked
 * together: the longest run of settled deliveries at the head of the channel's outstanding ones with one
 * `multiple` ack (everything up to its tag), the settled ones behind a delivery still in work one by one (so a
 * message held by a database outage never holds back the acks of other devices). A delivery is still acked only
 * after its handler committed: batching delays the frame by one turn, never acks early. Requeues (nack) are sent
 * at once, alone.
 */
import type { Channel, Message } from "amqplib";

/** The part of an amqplib channel this uses (a recording fake in tests). */
export type AckChannel = Pick<Channel, "ack" | "nack">;

/** One channel's outstanding deliveries (one instance per channel: delivery tags are per channel). */
export class AckBatcher {
  /** Outstanding deliveries in delivery-tag order, and whether each is settled and waiting for its ack frame. */
  readonly #outstanding = new Map<number, { msg: Message; settled: boolean }>();
  #flushScheduled = false;

  /**
   * `onFlushError` hears a failed batched flush (the channel closed meanwhile: the broker redelivers the unacked
   * deliveries, and handlers are idempotent per id/seq).
   */
  constructor(
    private readonly channel: AckChannel,
    private readonly onFlushError: (error: unknown) => void,
  ) {}

  /** Records a delivery as outstanding (call in the consume callback, in delivery order). */
  received(msg: Message): void {
    this.#outstanding.set(msg.fields.deliveryTag, { msg, settled: false });
  }

  /** The delivery's handler committed: its ack goes out with the others of this turn. */
  ack(msg: Message): void {
    const entry = this.#outstanding.get(msg.fields.deliveryTag);
    if (!entry) return;
    entry.settled = true;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => {
        try {
          this.flush();
        } catch (error) {
          this.onFlushError(error);
        }
      });
    }
  }

  /** Hands the delivery back to the broker now (redelivered, counted against the queue's delivery limit). */
  requeue(msg: Message): void {
    if (!this.#outstanding.delete(msg.fields.deliveryTag)) return;
    this.channel.nack(msg, false, true);
  }

  /** Deliveries received and not yet acked or requeued. */
  get size(): number {
    return this.#outstanding.size;
  }

  /** Sends the acks of every settled delivery (see the file comment). Throws what the channel throws (closed). */
  flush(): void {
    this.#flushScheduled = false;
    let head: Message | null = null;
    const behind: Message[] = [];
    let inHead = true;
    // Map iteration follows insertion, i.e. delivery order (tags grow on a channel).
    for (const [tag, entry] of this.#outstanding) {
      if (!entry.settled) {
        inHead = false;
        continue;
      }
      this.#outstanding.delete(tag);
      if (inHead) head = entry.msg;
      else behind.push(entry.msg);
    }
    if (head) this.channel.ack(head, true);
    for (const msg of behind) this.channel.ack(msg, false);
  }
}
