/**
 * The one HTTP fetcher tuf-js uses here (HW-UPD-2: a size cap and a timeout on EVERY fetch).
 *
 * tuf-js already refuses a body longer than the signed (or configured maximum) length, but it only stops
 * reading: the server could keep the socket busy. This fetcher also aborts the request the moment the cap is
 * passed ("endless data", TUF 5.6.2 / 5.7.3) and after the deadline (metadata and targets have separate ones,
 * since a 64 MB image needs far longer than a 2 KB timestamp). Redirects are refused: the repository URLs are
 * configured, and a redirect to another host would widen what the board talks to.
 *
 * It also writes the download itself: tuf-js's BaseFetcher copies every chunk (`Buffer.from`) into a
 * `createWriteStream` and waits for each write's callback, which made a 64 MB image download several times slower
 * than `curl`; here each received chunk is written as is through one FileHandle. Same contract as tuf-js: a private
 * temporary file handed to `handler`, removed after it returns or throws.
 *
 * A partitioned network (HW-FAULT-12): a fetch that receives no byte for `stallTimeoutMs` (no answer, or a body
 * that stopped arriving: packets dropped, not refused) is aborted instead of hanging until `targetTimeoutMs`
 * (30 min by default). A download (image or metadata) that ends that way (or on any network error or a 5xx) starts
 * again from byte 0 into the same private file, truncated, after a backoff, up to `downloadAttempts` times; `handler` (tuf-js:
 * length and hashes against the signed metadata) sees only a download that reached its end. A refusal (4xx, over
 * the signed length) is never retried. No Range resume: the plane's target route answers whole files, and
 * restarting keeps one code path whose result is verified end to end anyway.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BaseFetcher } from "tuf-js";
import { DownloadError, DownloadHTTPError, DownloadLengthMismatchError } from "tuf-js/dist/error.js";
import { readableChunks, writeStreamToFile } from "../../../shared/fs/index.js";
import { fetchRetryingReset } from "../../../shared/http/retry.js";

export interface BoundedFetcherOptions {
  metadataTimeoutMs: number;
  targetTimeoutMs: number;
  /** URLs under this prefix are targets (images); everything else is metadata. */
  targetsUrl?: string;
  userAgent?: string;
  fetch?: typeof fetch;
  /** Abort a fetch that receives no byte for this long (ms; default: no stall timeout). */
  stallTimeoutMs?: number;
  /** Downloads of one file (image or metadata) before giving up (default 1: no retry). */
  downloadAttempts?: number;
  /** Called before each retry of a target download. */
  onRetry?: (detail: { url: string; attempt: number; attempts: number; reason: string; retryInMs: number }) => void;
}

/** Backoff before retry `attempt` (1-based) of a target download: 1 s, 2 s, 4 s ... capped at 30 s. */
export function downloadRetryDelayMs(attempt: number): number {
  return Math.min(30_000, 1000 * 2 ** (attempt - 1));
}

/** A failed download worth trying again: the network, not the content or the server's refusal. */
function retryable(error: unknown): boolean {
  if (error instanceof DownloadLengthMismatchError) return false;
  if (error instanceof DownloadHTTPError) return error.statusCode >= 500;
  return true;
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
      // Metadata too: a GET is idempotent, and a partition during the refresh must not fail an update that a
      // second try would finish (a 404, which ends root rotation, is a refusal and never retried).
      const attempts = Math.max(1, this.opts.downloadAttempts ?? 1);
      for (let attempt = 1; ; attempt += 1) {
        try {
          await this.downloadOnce(url, tempFile, maxLength);
          break;
        } catch (error) {
          this.endOpenRequests(url);
          if (attempt >= attempts || !retryable(error)) throw error;
          const retryInMs = downloadRetryDelayMs(attempt);
          this.opts.onRetry?.({ url, attempt, attempts, reason: error instanceof Error ? error.message : String(error), retryInMs });
          await new Promise((resolve) => setTimeout(resolve, retryInMs));
        }
      }
      return await handler(tempFile);
    } finally {
      this.endOpenRequests(url);
      this.maxLength = Number.POSITIVE_INFINITY;
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** One download of `url` into `file` from byte 0 (a previous attempt's bytes are truncated away). */
  private async downloadOnce(url: string, file: string, maxLength: number): Promise<void> {
    const body = await this.fetch(url);
    let received = 0;
    await writeStreamToFile(file, readableChunks(body), {
      onChunk(chunk) {
        received += chunk.byteLength;
        // HW-UPD-2, TUF 5.7.3: fetch() already errors the stream past the cap; checked again where bytes land.
        if (received > maxLength) throw new DownloadLengthMismatchError(`${url}: more than the ${maxLength} bytes allowed`);
      },
    });
  }

  /** A read that stopped at the cap or on an error leaves the request open: end it so the socket is freed. */
  private endOpenRequests(url: string): void {
    for (const controller of this.open) controller.abort(new DownloadError(`${url}: download ended`));
    this.open.clear();
  }

  private isTarget(url: string): boolean {
    return this.opts.targetsUrl !== undefined && url.startsWith(this.opts.targetsUrl);
  }

  async fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    const timeoutMs = this.isTarget(url) ? this.opts.targetTimeoutMs : this.opts.metadataTimeoutMs;
    const controller = new AbortController();
    this.open.add(controller);
    const timer = setTimeout(() => controller.abort(new DownloadError(`${url}: not complete within ${timeoutMs} ms`)), timeoutMs);
    // HW-FAULT-12: no answer or no byte for stallTimeoutMs (a partition drops packets silently) aborts the fetch.
    const stallMs = this.opts.stallTimeoutMs;
    let stall: ReturnType<typeof setTimeout> | undefined;
    const armStall = () => {
      if (stallMs === undefined) return;
      clearTimeout(stall);
      stall = setTimeout(() => controller.abort(new DownloadError(`${url}: no data for ${stallMs} ms`)), stallMs);
    };
    armStall();
    const cleanup = () => {
      clearTimeout(timer);
      clearTimeout(stall);
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
          armStall();
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
