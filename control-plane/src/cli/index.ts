/**
 * `hashward`: a small operator CLI over the HTTP API (control-plane/src/http). Prints the API's JSON answer on
 * stdout; on an API error prints its `{ error }` body on stderr and exits 1; usage errors exit 2.
 *
 * Configuration: HASHWARD_URL (or --url) and HASHWARD_TOKEN (or --token-file, a file holding the token; a file
 * keeps the token out of the process list and shell history). Side effects (fetch, files, output) are injected.
 */
import { parseArgs } from "node:util";
import { fetchRetryingReset } from "../../../shared/http/retry.js";
import { defaultPlaneCaFile } from "../../../shared/tls/index.js";
import { POLICY_KINDS } from "../policy/schemas.js";

export interface CliIo {
  env: Readonly<Record<string, string | undefined>>;
  /** `ca`: PEM of the only CA to trust for an https:// plane (the plane's own, HW-TLS-1). */
  fetch: (url: string, init: RequestInit, ca?: string) => Promise<Response>;
  readFile: (path: string) => Promise<string>;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

export const USAGE = `usage: hashward [--url URL] [--token-file FILE] [--ca-file FILE] <command>

devices list [--enrollment S] [--appraisal S] [--containment S] [--model M] [--limit N] [--offset N]
devices get ID | history ID | commands ID | events ID [--limit N]
devices accept ID | reject ID [--reason R]
devices revoke ID [--reason R]                      (admin)
devices preauthorize --public-key KEY --model M
attest ID
quarantine ID... --reason R
release ID... --reason R
refs list [--model M] [--firmware-version V]
refs register --file FILE [--model M --firmware-version V]
                                                    (FILE: {model, firmwareVersion, measurements}, or the
                                                     JSON array printed by "hashward-agent measure")
refs capture ID
refs approve REF_ID                                 (admin)
policies list pools|network|indicators|farm-alerts
policies set pools|network|indicators|farm-alerts --file FILE   (FILE: the PUT body, e.g. {"scope":{"model":"S19"},"allowedUrls":[...]}
                                                     or {"zeroHashrateSamples":6,"fanStoppedRpm":500})
policies delete pools|network|indicators|farm-alerts POLICY_ID
device-policy ID                                    (effective policy, delivered and acked versions)
tokens enrollment [--ttl-ms N] [--max-uses N] [--label L]
tokens api --role viewer|operator|admin --label L [--ttl-ms N]   (admin; no --ttl-ms = no expiry)
tokens list | enrollment-list                       (admin; ids, roles, times, status, never secrets)
tokens revoke TOKEN_ID [--reason R]                 (admin; tok_... API token or enr_... enrollment token)
webhooks add --target URL --kinds K1,K2 [--label D] (admin; prints the signing secret once)
webhooks list | deliveries ENDPOINT_ID [--limit N]
webhooks delete ENDPOINT_ID                         (admin)
                                                    (kinds: appraisal.changed, device.quarantined,
                                                     device.released, guard.alert, rollout.halted,
                                                     session.takeover, device.stale, farm.alert)
audit [--limit N] [--offset N]                      (admin)
health

environment: HASHWARD_URL (default https://127.0.0.1:8080), HASHWARD_TOKEN, HASHWARD_CA_FILE (default
  <HASHWARD_DATA_DIR or ./data>/ca.pem: the plane's own CA; --ca-file FILE also sets it)`;

const DEFAULT_URL = "https://127.0.0.1:8080";

class UsageError extends Error {
  override name = "UsageError";
}

const OPTIONS = {
  url: { type: "string" },
  kinds: { type: "string" },
  target: { type: "string" },
  "token-file": { type: "string" },
  "ca-file": { type: "string" },
  reason: { type: "string" },
  limit: { type: "string" },
  offset: { type: "string" },
  enrollment: { type: "string" },
  appraisal: { type: "string" },
  containment: { type: "string" },
  model: { type: "string" },
  "firmware-version": { type: "string" },
  "public-key": { type: "string" },
  file: { type: "string" },
  "ttl-ms": { type: "string" },
  "max-uses": { type: "string" },
  label: { type: "string" },
  role: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>["values"];

interface ApiCall {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  body?: unknown;
  auth: boolean;
}

/** Runs one CLI invocation; returns the process exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let call: ApiCall;
  let values: Values;
  try {
    const parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
    values = parsed.values;
    if (values.help || parsed.positionals.length === 0) {
      io.stdout(`${USAGE}\n`);
      return values.help ? 0 : 2;
    }
    call = await commandToCall(parsed.positionals, values, io);
  } catch (err) {
    io.stderr(`hashward: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}\n`);
    return 2;
  }

  // The default matches the control plane's default HTTP port on this host.
  const baseUrl = values.url ?? (io.env.HASHWARD_URL || DEFAULT_URL);
  const headers: Record<string, string> = {};
  if (call.auth) {
    const token = values["token-file"] ? (await io.readFile(values["token-file"])).trim() : io.env.HASHWARD_TOKEN;
    if (!token) {
      io.stderr("hashward: set HASHWARD_TOKEN or pass --token-file\n");
      return 2;
    }
    headers.authorization = `Bearer ${token}`;
  }
  if (call.body !== undefined) headers["content-type"] = "application/json";

  // HW-TLS-1: the plane's own CA from its data dir is the trust anchor, so `npm start` + this CLI just work.
  let ca: string | undefined;
  if (new URL(baseUrl).protocol === "https:") {
    const caFile = values["ca-file"] ?? (io.env.HASHWARD_CA_FILE || defaultPlaneCaFile(io.env));
    try {
      ca = await io.readFile(caFile);
    } catch (err) {
      // Without it only a certificate from a system-trusted CA is accepted (operator-provided certificates).
      if (values["ca-file"] !== undefined || io.env.HASHWARD_CA_FILE) {
        io.stderr(`hashward: cannot read the CA file ${caFile}: ${err instanceof Error ? err.message : String(err)}\n`);
        return 2;
      }
    }
  }

  let response: Response;
  try {
    // HW-HTTP-4: idempotent calls are retried once when a reused keep-alive connection was closed under them.
    response = await fetchRetryingReset((url, init) => io.fetch(url, init, ca), new URL(call.path, baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`).toString(), {
      method: call.method,
      headers,
      ...(call.body === undefined ? {} : { body: JSON.stringify(call.body) }),
    });
  } catch (err) {
    io.stderr(`hashward: cannot reach ${baseUrl}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  const text = await response.text();
  const pretty = prettyJson(text);
  if (!response.ok) {
    io.stderr(`hashward: ${call.method} ${call.path} -> ${response.status}\n${pretty}\n`);
    return 1;
  }
  io.stdout(`${pretty}\n`);
  return 0;
}

function prettyJson(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text.trimEnd();
  }
}

function query(entries: Record<string, string | undefined>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(entries)) if (value !== undefined) params.set(key, value);
  const text = params.toString();
  return text ? `?${text}` : "";
}

function integer(value: string | undefined, option: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) throw new UsageError(`--${option} must be an integer, got ${JSON.stringify(value)}`);
  return Number(value);
}

function one(args: string[], what: string): string {
  if (args.length !== 1 || !args[0]) throw new UsageError(`expected exactly one ${what}`);
  return args[0];
}

function required(value: string | undefined, option: string): string {
  if (value === undefined || value === "") throw new UsageError(`--${option} is required`);
  return value;
}

/** Path segments are encoded: the API validates ids, but a CLI argument must never change the route. */
const seg = encodeURIComponent;

async function commandToCall(positionals: string[], v: Values, io: CliIo): Promise<ApiCall> {
  const [group, verb, ...rest] = positionals;
  const post = (path: string, body?: unknown): ApiCall => ({ method: "POST", path, body, auth: true });
  const get = (path: string): ApiCall => ({ method: "GET", path, auth: true });
  const put = (path: string, body: unknown): ApiCall => ({ method: "PUT", path, body, auth: true });
  const readJsonFile = async (): Promise<unknown> => {
    const file = required(v.file, "file");
    try {
      return JSON.parse(await io.readFile(file));
    } catch (err) {
      throw new UsageError(`--file ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  const reasonBody = () => (v.reason === undefined ? {} : { reason: v.reason });
  const containment = (action: "quarantine" | "release") => {
    const ids = [verb, ...rest].filter((id): id is string => id !== undefined);
    if (ids.length === 0) throw new UsageError(`${action} needs at least one device id`);
    const reason = required(v.reason, "reason");
    // One device -> the per-device route (its 404 names the device); several -> the bulk route.
    const [single] = ids;
    return ids.length === 1 && single !== undefined
      ? post(`api/v1/devices/${seg(single)}/${action}`, { reason })
      : post(`api/v1/${action}`, { deviceIds: ids, reason });
  };

  switch (group) {
    case "health":
      return { method: "GET", path: "healthz", auth: false };
    case "attest":
      return post(`api/v1/devices/${seg(one([verb, ...rest].filter(Boolean) as string[], "device id"))}/attest`);
    case "quarantine":
    case "release":
      return containment(group);
    case "audit": {
      if (verb !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(verb)}`);
      return get(`api/v1/audit${query({ limit: v.limit, offset: v.offset })}`);
    }
    case "devices":
      switch (verb) {
        case "list":
          return get(
            `api/v1/devices${query({
              enrollment: v.enrollment,
              appraisal: v.appraisal,
              containment: v.containment,
              model: v.model,
              limit: v.limit,
              offset: v.offset,
            })}`,
          );
        case "get":
          return get(`api/v1/devices/${seg(one(rest, "device id"))}`);
        case "history":
        case "commands":
        case "events":
          return get(`api/v1/devices/${seg(one(rest, "device id"))}/${verb}${query({ limit: v.limit })}`);
        case "accept":
        case "reject":
        case "revoke":
          return post(`api/v1/devices/${seg(one(rest, "device id"))}/${verb}`, reasonBody());
        case "preauthorize":
          return post("api/v1/devices/preauthorize", { publicKey: required(v["public-key"], "public-key"), model: required(v.model, "model") });
        default:
          break;
      }
      break;
    case "refs":
      switch (verb) {
        case "list":
          return get(`api/v1/reference-values${query({ model: v.model, firmwareVersion: v["firmware-version"] })}`);
        case "register": {
          const file = required(v.file, "file");
          let body: unknown;
          try {
            body = JSON.parse(await io.readFile(file));
          } catch (err) {
            throw new UsageError(`--file ${file}: ${err instanceof Error ? err.message : String(err)}`);
          }
          // A bare measurement list (`hashward-agent measure` output) takes its model and version from the options.
          if (Array.isArray(body)) {
            body = { model: required(v.model, "model"), firmwareVersion: required(v["firmware-version"], "firmware-version"), measurements: body };
          }
          return post("api/v1/reference-values", body);
        }
        case "capture":
          return post("api/v1/reference-values/capture", { deviceId: one(rest, "device id") });
        case "approve":
          return post(`api/v1/reference-values/${seg(one(rest, "reference id"))}/approve`);
        default:
          break;
      }
      break;
    case "policies": {
      const kind = one(rest.slice(0, 1), `policy kind (${POLICY_KINDS.join(", ")})`);
      if (!(POLICY_KINDS as readonly string[]).includes(kind)) throw new UsageError(`unknown policy kind ${JSON.stringify(kind)}`);
      switch (verb) {
        case "list":
          return get(`api/v1/policies/${kind}`);
        case "set":
          return put(`api/v1/policies/${kind}`, await readJsonFile());
        case "delete":
          return { method: "DELETE", path: `api/v1/policies/${kind}/${seg(one(rest.slice(1), "policy id"))}`, auth: true };
        default:
          break;
      }
      break;
    }
    case "webhooks":
      switch (verb) {
        case "add":
          return post("api/v1/webhooks", {
            url: required(v.target, "target"),
            kinds: required(v.kinds, "kinds").split(",").filter((k) => k !== ""),
            ...(v.label === undefined ? {} : { description: v.label }),
          });
        case "list":
          return get("api/v1/webhooks");
        case "deliveries":
          return get(`api/v1/webhooks/${seg(one(rest, "endpoint id"))}/deliveries${query({ limit: v.limit })}`);
        case "delete":
          return { method: "DELETE", path: `api/v1/webhooks/${seg(one(rest, "endpoint id"))}`, auth: true };
        default:
          break;
      }
      break;
    case "device-policy":
      return get(`api/v1/devices/${seg(one([verb, ...rest].filter(Boolean) as string[], "device id"))}/policy`);
    case "tokens":
      switch (verb) {
        case "enrollment": {
          const ttlMs = integer(v["ttl-ms"], "ttl-ms");
          const maxUses = integer(v["max-uses"], "max-uses");
          return post("api/v1/enrollment-tokens", {
            ...(ttlMs === undefined ? {} : { ttlMs }),
            ...(maxUses === undefined ? {} : { maxUses }),
            ...(v.label === undefined ? {} : { label: v.label }),
          });
        }
        case "api": {
          const ttlMs = integer(v["ttl-ms"], "ttl-ms");
          return post("api/v1/api-tokens", { role: required(v.role, "role"), label: required(v.label, "label"), ...(ttlMs === undefined ? {} : { ttlMs }) });
        }
        case "list":
          return { method: "GET", path: "api/v1/api-tokens", auth: true };
        case "enrollment-list":
          return { method: "GET", path: "api/v1/enrollment-tokens", auth: true };
        case "revoke": {
          // HW-TOKEN-1: the id's prefix says which kind of token it is.
          const id = required(positionals[2], "TOKEN_ID");
          const kind = id.startsWith("enr_") ? "enrollment-tokens" : "api-tokens";
          return post(`api/v1/${kind}/${encodeURIComponent(id)}/revoke`, v.reason === undefined ? {} : { reason: v.reason });
        }
        default:
          break;
      }
      break;
    default:
      break;
  }
  throw new UsageError(`unknown command: ${positionals.join(" ")}`);
}
