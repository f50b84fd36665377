/**
 * An operator's event-stream client that never gives up: `GET /api/v1/events/stream`, and on any end or error it
 * reconnects with `Last-Event-ID` (HW-SSE-1), as EventSource does. It records every event id it was given, so a
 * test can compare them with the ids the database holds: none missing, none twice, in increasing order.
 * Our own reader (the framing is a few lines) rather than an EventSource package: it must go through planeFetch,
 * which trusts the test plane's own CA, and it keeps every raw id for the comparison.
 */
import { planeFetch } from "../../support/api.js";

export interface StreamedEvent {
  id: number;
  kind: string;
  deviceId: string | null;
  data: Record<string, unknown>;
}

export class ResumingEventStream {
  readonly events: StreamedEvent[] = [];
  reconnects = 0;
  #stopped = false;
  #controller: AbortController | null = null;
  #loop: Promise<void>;

  /** `fromId`: start as a client that already saw that event id (0: replay everything committed). */
  constructor(
    private readonly url: string,
    private readonly token: string,
    private readonly fromId: number | null = null,
  ) {
    this.#loop = this.#run();
  }

  get lastId(): number | null {
    return this.events.length > 0 ? this.events[this.events.length - 1]!.id : this.fromId;
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      this.#controller = new AbortController();
      try {
        const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
        if (this.lastId !== null) headers["last-event-id"] = String(this.lastId);
        const response = await planeFetch(this.url, { headers, signal: this.#controller.signal });
        if (response.status === 200 && response.body) await this.#read(response.body);
        else await response.text().catch(() => undefined);
      } catch {
        // reset, refused, aborted: reconnect below
      }
      if (this.#stopped) return;
      this.reconnects += 1;
      await new Promise((resolve) => setTimeout(resolve, 250)); // EventSource's reconnection delay, not a synchronisation
    }
  }

  async #read(body: ReadableStream<Uint8Array>): Promise<void> {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let cut: number;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const id = /^id: ?(\d+)$/m.exec(block)?.[1];
        const data = /^data: ?(.*)$/m.exec(block)?.[1];
        if (id === undefined || data === undefined) continue; // keep-alive comment
        const event = JSON.parse(data) as { kind: string; deviceId: string | null; data: Record<string, unknown> };
        this.events.push({ id: Number(id), kind: event.kind, deviceId: event.deviceId, data: event.data });
      }
    }
  }

  async close(): Promise<void> {
    this.#stopped = true;
    this.#controller?.abort();
    await this.#loop;
  }
}
