import { fetchRetryingReset } from "../../shared/http/retry.js";
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
    const response = await fetchRetryingReset(fetch, `${this.baseUrl}${path}`, {
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
