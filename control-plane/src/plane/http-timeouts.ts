/**
 * Connection timeouts of the plane's HTTP listener (node:http, which `npm start` runs on Bun's implementation and
 * `npm run start:node` on Node's). Kept apart from the listener code so TLS and other listener changes merge cleanly.
 *
 * HW-HTTP-3 (docs/rules.md): a request whose body has not fully arrived `bodyTimeoutMs` plus its announced
 * Content-Length at MIN_BODY_BYTES_PER_SEC after its headers is answered 408 (when nothing was sent yet) and its
 * connection closed, on every route, authenticated or not. The length term lets a 512 MiB release image stream
 * in over a slow link while a 1 MB body that never arrives is cut after about 11 s. Bun 1.4's node:http ignores
 * `requestTimeout` and `headersTimeout` (measured: a stalled `Content-Length: 1000000` body kept the socket open
 * for minutes), so the bound is enforced here per request, the same on both runtimes; Node's own
 * `requestTimeout` is switched off so it cannot cut a long upload. Stalled headers are closed by Bun's idle timer
 * (about 10 s) and by Node's `headersTimeout`.
 *
 * HW-HTTP-4: idle keep-alive connections are closed by the server after `keepAliveTimeoutMs` and the server says
 * so in `Keep-Alive: timeout=<s>`. Clients must stop reusing a connection before the server closes it: undici
 * (Node's fetch) drops it `keepAliveTimeoutThreshold` (1-2 s) before the hinted time. A server timeout longer
 * than a client's pool keeps idle connections alive on the server side for every client of the plane; the
 * remaining race (a request sent as the server closes) is covered by the clients retrying once
 * (shared/http/retry.ts).
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Logger } from "pino";
import { BodyTimeoutError, failBody } from "../http/body-timeout.js";

export interface HttpTimeouts {
  /** Longest wait, in milliseconds, from a request's headers to the last byte of its body (HW-HTTP-3). */
  bodyTimeoutMs: number;
  /** Idle time, in milliseconds, after which the server closes a keep-alive connection (HW-HTTP-4). */
  keepAliveTimeoutMs: number;
}

/**
 * Slowest average body rate accepted, in bytes per second, on top of bodyTimeoutMs (HW-HTTP-3). 1 MiB/s: far
 * below any LAN or uplink an operator uploads release images over, far above a trickling attacker.
 */
export const MIN_BODY_BYTES_PER_SEC = 1024 * 1024;

/** Whether the request announces a body (RFC 9112 6.3: Content-Length > 0 or a Transfer-Encoding). */
function expectsBody(request: IncomingMessage): boolean {
  if (request.headers["transfer-encoding"] !== undefined) return true;
  const length = Number(request.headers["content-length"] ?? "0");
  return !Number.isFinite(length) || length > 0;
}

/**
 * Applies `timeouts` to `server` (call before listen). The per-request body timer is armed only for requests that
 * announce a body, cleared when the body has arrived or the socket closed, so it never shortens keep-alive.
 */
export function applyHttpTimeouts(server: Server, timeouts: HttpTimeouts, logger: Logger): void {
  const { bodyTimeoutMs, keepAliveTimeoutMs } = timeouts;
  server.keepAliveTimeout = keepAliveTimeoutMs;
  // HW-HTTP-3: the per-request timer below bounds bodies on both runtimes; Node's whole-request timer (300 s by
  // default) would cut a long release upload. Headers still have to arrive within bodyTimeoutMs on Node.
  server.requestTimeout = 0;
  server.headersTimeout = bodyTimeoutMs;

  // HW-HTTP-4 on sockets handed in by the TLS listener (control-plane/src/tls createApiServer): Bun's node:http
  // announces `Keep-Alive: timeout=` on them but never closes them (measured: open 5 s past a 1 s timeout), so
  // an idle timer runs from the connection and from each finished response until the next request. On Node the
  // server's own keepAliveTimeout fires at the same time; whichever is first closes.
  const idleTimers = new WeakMap<Socket, { arm(): void; clear(): void }>();
  server.on("connection", (socket: Socket) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const clear = (): void => clearTimeout(timer);
    const arm = (): void => {
      clear();
      timer = setTimeout(() => socket.destroy(), keepAliveTimeoutMs);
      timer.unref();
    };
    idleTimers.set(socket, { arm, clear });
    socket.once("close", clear);
    arm();
  });
  server.on("request", (request: IncomingMessage, response: ServerResponse) => {
    const idle = idleTimers.get(request.socket);
    if (idle) {
      idle.clear();
      response.once("finish", idle.arm);
    }
  });

  server.on("request", (request: IncomingMessage, response: ServerResponse) => {
    if (!expectsBody(request) || request.complete) return;
    const socket = request.socket;
    const announced = Number(request.headers["content-length"] ?? "0");
    const deadlineMs = bodyTimeoutMs + (Number.isFinite(announced) ? Math.ceil((announced / MIN_BODY_BYTES_PER_SEC) * 1000) : 0);
    const timer = setTimeout(() => {
      if (request.complete || request.readableEnded) return;
      // HW-HTTP-3: the body did not arrive in time. Only the method is logged: the path is the client's choice.
      logger.warn({ method: request.method?.slice(0, 16), deadlineMs, peer: socket.remoteAddress }, "http request body timed out; connection closed");
      // The handler still waits for the body: end its stream with an error, or (Bun) it waits forever and what it
      // holds is never released (an image upload's temp FileHandle, reclaimed by GC, aborts the Bun process).
      if (!response.headersSent) failBody(request, new BodyTimeoutError(deadlineMs));
      // The app answers 408 (control-plane/src/http/body-timeout.ts); the rest of the body would still be on the
      // wire, so the connection cannot be reused.
      response.once("finish", () => socket.destroy());
      setTimeout(() => socket.destroy(), 1_000).unref();
    }, deadlineMs);
    timer.unref();
    const clear = (): void => clearTimeout(timer);
    request.once("end", clear);
    request.once("close", clear);
  });
}
