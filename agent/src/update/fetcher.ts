/**
 * The one HTTP fetcher tuf-js uses here (HW-UPD-2: a size cap and a timeout on EVERY fetch).
 *
 * tuf-js already refuses a body longer than the signed (or configured maximum) length, but it only stops
 * reading: the server could keep the socket busy. This fetcher also aborts the request the moment the cap is
 * passed ("endless data", TUF 5.6.2 / 5.7.3) and after the deadline (metadata and targets have separate ones,
 * since a 64 MB image needs far longer than a 2 KB timestamp). Redirects are refused: the repository URLs are
 * configured, and a redirect to another host would widen what the board talks to.
 */
import { BaseFetcher } from "tuf-js";
import { DownloadError, DownloadHTTPError, DownloadLengthMismatchError } from "tuf-js/dist/error.js";
import { fetchRetryingReset } from "../../../shared/http/retry.js";

export interface BoundedFetcherOptions {
  metadataTimeoutMs: number;
  targetTimeoutMs: number;
  /** URLs under this prefix are targets (images); everything else is metadata. */
  targetsUrl?: string;
  userAgent?: string;
  fetch?: typeof fetch;
}

export class BoundedFetcher extends BaseFetcher {
  /** Cap of the download in progress (tuf-js downloads one file at a time per Updater). */
  private maxLength = Number.POSITIVE_INFINITY;
  private readonly open = new Set<AbortController>();

  constructor(private readonly opts: BoundedFetcherOptions) {
    super();
  }

  override async downloadFile<T>(url: string, maxLength: number, handler: (file: string) => Promise<T>): Promise<T> {
    this.maxLength = maxLength;
    try {
      return await super.downloadFile(url, maxLength, handler);
    } finally {
      // tuf-js stops reading at the cap without cancelling: end the request here so the socket is freed.
      for (const controller of this.open) controller.abort(new DownloadError(`${url}: download ended`));
      this.open.clear();
      this.maxLength = Number.POSITIVE_INFINITY;
    }
  }

  async fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    const isTarget = this.opts.targetsUrl !== undefined && url.startsWith(this.opts.targetsUrl);
    const timeoutMs = isTarget ? this.opts.targetTimeoutMs : this.opts.metadataTimeoutMs;
    const controller = new AbortController();
    this.open.add(controller);
    const timer = setTimeout(() => controller.abort(new DownloadError(`${url}: not complete within ${timeoutMs} ms`)), timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      this.open.delete(controller);
    };
    let response: Response;
    try {
      // HW-HTTP-4: a GET; retried once when a reused keep-alive connection was closed under it.
      response = await fetchRetryingReset(this.opts.fetch ?? fetch, url, {
        signal: controller.signal,
        redirect: "error",
        headers: { "user-agent": this.opts.userAgent ?? "hashward-agent" },
      });
    } catch (error) {
      cleanup();
      if (controller.signal.aborted && controller.signal.reason instanceof Error) throw controller.signal.reason;
      throw new DownloadError(`${url}: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (!response.ok || !response.body) {
      cleanup();
      await response.body?.cancel().catch(() => undefined);
      throw new DownloadHTTPError(`${url}: HTTP ${response.status}`, response.status);
    }
    const declared = Number(response.headers.get("content-length") ?? "NaN");
    if (Number.isFinite(declared) && declared > this.maxLength) {
      cleanup();
      controller.abort();
      throw new DownloadLengthMismatchError(`${url}: server announces ${declared} bytes, more than the ${this.maxLength} allowed`);
    }
    const maxLength = this.maxLength;
    let received = 0;
    const reader = response.body.getReader();
    return new ReadableStream<Uint8Array<ArrayBuffer>>({
      pull: async (stream) => {
        try {
          const { done, value } = await reader.read();
          if (done) {
            cleanup();
            stream.close();
            return;
          }
          received += value.byteLength;
          // HW-UPD-2, TUF 5.7.3: never more than the signed length ("endless data").
          if (received > maxLength) {
            const error = new DownloadLengthMismatchError(`${url}: more than the ${maxLength} bytes allowed`);
            cleanup();
            controller.abort(error);
            stream.error(error);
            return;
          }
          stream.enqueue(value as Uint8Array<ArrayBuffer>);
        } catch (error) {
          cleanup();
          stream.error(controller.signal.aborted && controller.signal.reason instanceof Error ? controller.signal.reason : error);
        }
      },
      cancel: async () => {
        cleanup();
        controller.abort();
      },
    });
  }
}
