/**
 * HW-HTTP-3: the listener (control-plane/src/plane/http-timeouts.ts) marks a request whose body did not arrive in
 * time and ends its body stream with BodyTimeoutError; the app then answers 408 whatever error the handler's
 * body read turned into (hono's JSON validator reports any read failure as malformed JSON).
 */
import type { IncomingMessage } from "node:http";

/** The error a handler reading a timed-out body sees. */
export class BodyTimeoutError extends Error {
  constructor(readonly deadlineMs: number) {
    super(`request body not received within ${deadlineMs} ms`);
    this.name = "BodyTimeoutError";
  }
}

const timedOut = new WeakMap<IncomingMessage, BodyTimeoutError>();

/** Marks `request` as timed out and errors its body stream (without touching the socket the answer goes out on). */
export function failBody(request: IncomingMessage, error: BodyTimeoutError): void {
  timedOut.set(request, error);
  request.emit("error", error);
}

/** The timeout of the request behind `env` (the node adapter's `{ incoming }`), or undefined. */
export function bodyTimeoutOf(env: unknown): BodyTimeoutError | undefined {
  const incoming = (env as { incoming?: IncomingMessage } | undefined)?.incoming;
  return incoming ? timedOut.get(incoming) : undefined;
}
