/**
 * One retry for a request that died on a reused keep-alive connection (HW-HTTP-4, docs/rules.md).
 *
 * An HTTP/1.1 client may send a request on a pooled connection at the moment the server closes it for being idle;
 * the request then fails before any response byte with `fetch failed` (undici: cause UND_ERR_SOCKET "other side
 * closed" or ECONNRESET; Bun: code ECONNRESET). RFC 9110 9.2.2 lets a client retry an idempotent request
 * automatically in that case, and RFC 9112 9.3.1 notes that the server cannot have acted on it when it closed
 * the idle connection first. Every HTTP client of the plane (CLI, release tool, agent enrollment and TUF
 * fetcher, tests' and benches' API helper) goes through this, once, with a body it can send again.
 */

/** Methods RFC 9110 9.2.2 calls idempotent; POST only when the caller says the route is (e.g. enrollment polls). */
const IDEMPOTENT_METHODS = new Set(["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]);

/** Error codes of a connection that the peer closed or reset before a response (undici, Node, Bun). */
const RESET_CODES = new Set(["UND_ERR_SOCKET", "ECONNRESET", "EPIPE", "UND_ERR_CLOSED", "ConnectionClosed"]);

/** True when `error` (a rejected fetch) is a connection closed or reset by the server before any response. */
export function isConnectionReset(error: unknown): boolean {
  for (let current: unknown = error, depth = 0; current !== null && current !== undefined && depth < 4; depth++) {
    const { code, message, cause } = current as { code?: unknown; message?: unknown; cause?: unknown };
    if (typeof code === "string" && RESET_CODES.has(code)) return true;
    if (typeof message === "string" && /other side closed|socket hang up|connection reset/i.test(message)) return true;
    current = cause;
  }
  return false;
}

/** A body that can be sent a second time: none, text, bytes, a Blob or form data (not a one-shot stream). */
function replayable(body: unknown): boolean {
  return (
    body === undefined ||
    body === null ||
    typeof body === "string" ||
    body instanceof Uint8Array ||
    body instanceof ArrayBuffer ||
    body instanceof URLSearchParams ||
    (typeof Blob !== "undefined" && body instanceof Blob)
  );
}

export interface RetryOptions {
  /** The request may be repeated even though its method is POST (the route is idempotent by design). */
  idempotent?: boolean;
}

/**
 * `fetchFn(url, init)`, repeated once when it rejects with a connection reset (isConnectionReset) and the request
 * is idempotent (method or `options.idempotent`) with a replayable body and no aborted signal. Any other failure,
 * and the second failure, is thrown unchanged.
 */
export async function fetchRetryingReset(
  fetchFn: (url: string, init: RequestInit) => Promise<Response>,
  url: string,
  init: RequestInit = {},
  options: RetryOptions = {},
): Promise<Response> {
  try {
    return await fetchFn(url, init);
  } catch (error) {
    const method = (init.method ?? "GET").toUpperCase();
    const idempotent = options.idempotent === true || IDEMPOTENT_METHODS.has(method);
    if (!idempotent || !replayable(init.body) || init.signal?.aborted || !isConnectionReset(error)) throw error;
    return fetchFn(url, init);
  }
}
