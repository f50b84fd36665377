import { fetchRetryingReset } from "../../shared/http/retry.js";
import { httpsFetch } from "../../shared/tls/index.js";

/** CA certificates of the planes the tests started, by origin (https://127.0.0.1:PORT). */
const trustedCas = new Map<string, string>();

/** Trusts `caPem` for requests to `baseUrl`'s origin (startControlPlane registers each plane's own CA). */
export function trustPlaneCa(baseUrl: string, caPem: string): void {
  trustedCas.set(new URL(baseUrl).origin, caPem);
}

/** fetch that trusts the registered CA of the URL's plane (Node's global fetch takes no `ca`). */
export const planeFetch: typeof fetch = (input, init) => {
  const url = typeof input === "string" || input instanceof URL ? new URL(input.toString()) : new URL(input.url);
  const ca = trustedCas.get(url.origin);
  // The same client for http:// and https:// (node:http(s), a fresh connection per request), so benchmarks compare
  // TLS with plaintext and nothing else.
  return httpsFetch(ca ? { ca } : {})(input, init);
};

/** A tiny typed HTTP client for the operator API, as a test or a script would use it. */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    readonly token?: string,
  ) {}

  async request<T = any>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    // HW-HTTP-4: the same one retry on a reused connection's reset as the plane's own clients.
    const response = await fetchRetryingReset(planeFetch, `${this.baseUrl}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // Not JSON (e.g. /metrics): leave as text.
    }
    return { status: response.status, body: parsed as T };
  }

  async ok<T = any>(method: string, path: string, body?: unknown): Promise<T> {
    const { status, body: result } = await this.request<T>(method, path, body);
    if (status >= 300) throw new Error(`${method} ${path} -> ${status}: ${JSON.stringify(result)}`);
    return result;
  }

  get<T = any>(path: string): Promise<T> {
    return this.ok<T>("GET", path);
  }

  post<T = any>(path: string, body: unknown = {}): Promise<T> {
    return this.ok<T>("POST", path, body);
  }
}
