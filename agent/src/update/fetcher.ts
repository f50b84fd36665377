/**
 * The one HTTP fetcher tuf-js uses here (HW-UPD-2: a size cap and a timeout on EVERY fetch).
 *
 * tuf-js already refuses a body longer than the signed (or configured maximum) length, but it only stops
 * reading: the server could keep the socket busy. This fetcher also aborts the request the moment the cap is
 * passed ("endless data", TUF 5.6.2 / 5.7.3) and after the deadline (metadata and targets have separate ones,
 * since a 64 MB image needs far longer than a 2 KB timestamp). Redirects are refused: the repository URLs are
 * configured, and a redirect to another host would widen what the board talks to.
 *
 * It also writes the download itself (issue 13): tuf-js's BaseFetcher copies every chunk (`Buffer.from`) into a
 * `createWriteStream` and waits for each write's callback, which made a 64 MB image download several times slower
 * than `curl`; here each received chunk is written as is through one FileHandle. Same contract as tuf-js: a private
 * temporary file handed to `handler`, removed after it returns or throws.
 */
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
    const dir = await mkdtemp(join(tmpdir(), "hashward-fetch-"));
    try {
      const tempFile = join(dir, "download");
      const body = await this.fetch(url);
      const reader = body.getReader();
      const file = await open(tempFile, "wx", 0o600);
      try {
        let received = 0;
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          received += value.byteLength;
          // HW-UPD-2, TUF 5.7.3: fetch() already errors the stream past the cap; checked again where bytes land.
          if (received > maxLength) throw new DownloadLengthMismatchError(`${url}: more than the ${maxLength} bytes allowed`);
          await file.write(value);
        }
      } finally {
        reader.releaseLock();
        await file.close();
      }
      return await handler(tempFile);
    } finally {
      // A read that stopped at the cap or on an error leaves the request open: end it so the socket is freed.
      for (const controller of this.open) controller.abort(new DownloadError(`${url}: download ended`));
      this.open.clear();
      this.maxLength = Number.POSITIVE_INFINITY;
      await rm(dir, { recursive: true, force: true });
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
