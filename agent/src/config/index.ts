/**
 * Agent configuration: a JSON file plus environment overrides, validated once at start (errors name the option and its value).
 *
 * Every key can be overridden by `HASHWARD_AGENT_<UPPER_SNAKE of the dotted key>`, e.g. `HASHWARD_AGENT_MQTT_URL`,
 * `HASHWARD_AGENT_PLATFORM_ROOT`, `HASHWARD_AGENT_MEASURE_PATHS` (JSON array or comma list). Errors are
 * ConfigError naming the option (the key, or the env variable it came from) and the offending value.
 * Relative paths in the file are resolved against the file's directory.
 */
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import { ConfigError, firstZodIssue, fromBase64Url } from "../../../shared/index.js";
import { LOG_LEVELS } from "../log/index.js";
import { CA_CERT_HASH_PATTERN } from "../../../shared/tls/index.js";

/** Hard caps: a typo such as an extra zero must not make the agent silent for a week or fill the flash. */
export const CAPS = {
  heartbeatIntervalMs: { min: 100, max: 3_600_000 },
  attestIntervalMs: { min: 1_000, max: 7 * 86_400_000 },
  reconnectMinMs: { min: 10, max: 600_000 },
  reconnectMaxMs: { min: 100, max: 3_600_000 },
  enrollPollMs: { min: 100, max: 3_600_000 },
  outboxMaxEvents: { min: 1, max: 100_000 },
  measurePaths: { max: 256 },
  guardsIntervalMs: { min: 1_000, max: 3_600_000 },
  updateMaxImageBytes: { min: 1024, max: 4 * 1024 * 1024 * 1024 },
  updateMetadataTimeoutMs: { min: 1_000, max: 600_000 },
  updateTargetTimeoutMs: { min: 1_000, max: 6 * 3_600_000 },
  updateStallTimeoutMs: { min: 1_000, max: 600_000 },
  updateDownloadAttempts: { min: 1, max: 20 },
} as const;

const ms = (name: keyof typeof CAPS & `${string}Ms`, fallback: number) =>
  z.number().int().min(CAPS[name].min).max(CAPS[name].max).default(fallback);

const devicePath = z
  .string()
  .min(1)
  .max(1024)
  .refine((p) => p.startsWith("/"), "must be an absolute device path such as /config/cgminer.conf")
  .refine((p) => !p.split("/").includes(".."), "must not contain '..'");

/** One A/B slot: a block device (eMMC/SD partition), a raw MTD partition or a UBI volume (uboot.ts SlotDevice). */
const slotDevice = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("block"), path: devicePath, sizeBytes: z.number().int().positive().optional() }),
  z.strictObject({ kind: z.literal("mtd"), device: devicePath }),
  z.strictObject({ kind: z.literal("ubi"), volume: devicePath }),
]);
const slotDevicePath = (d: z.infer<typeof slotDevice>) => (d.kind === "block" ? d.path : d.kind === "mtd" ? d.device : d.volume);

const httpUrl = z
  .string()
  .refine((u) => URL.canParse(u) && ["http:", "https:"].includes(new URL(u).protocol), "must be an http(s):// URL");
const mqttUrl = z
  .string()
  .refine((u) => URL.canParse(u) && ["mqtt:", "mqtts:"].includes(new URL(u).protocol), "must be an mqtt:// or mqtts:// URL");
const ed25519PublicKey = z.string().refine((k) => {
  try {
    return /^[A-Za-z0-9_-]{43}$/.test(k) && fromBase64Url(k).length === 32;
  } catch {
    return false;
  }
}, "must be a base64url Ed25519 public key (43 characters)");
const label = z.string().min(1).max(128);

export const agentConfigSchema = z
  .strictObject({
    controlPlaneUrl: httpUrl,
    mqttUrl: mqttUrl.optional(),
    /**
     * PEM CA bundle for an EXTERNAL broker whose certificate is not from the plane's CA (default: the plane's
     * CA, agent/src/plane-trust).
     */
    mqttCaFile: z.string().min(1).optional(),
    /**
     * HW-PIN-2: `sha256:<hex>` of the plane CA's SubjectPublicKeyInfo, given with the enrollment token
     * (kubeadm's discovery-token-ca-cert-hash). The agent checks the plane against it before sending anything.
     */
    caCertHash: z.string().regex(CA_CERT_HASH_PATTERN, "must be sha256: and 64 lowercase hex digits").optional(),
    /** A provisioned PEM CA certificate for the plane (instead of caCertHash). */
    caFile: z.string().min(1).optional(),
    /** Take the plane's CA unauthenticated on first contact (logged at warn). Off unless set. */
    trustOnFirstUse: z.boolean().default(false),
    /** HW-TLS-1: allow http:// and mqtt:// (no TLS; logged at warn). Off unless set. */
    allowPlaintext: z.boolean().default(false),
    /**
     * HW-MTLS-1: ask the plane's CA for a client certificate at enrollment and present it to the broker
     * (for brokers that authenticate devices by certificate). Key `<stateDir>/mqtt-client.key` (P-256, 0600).
     */
    mqttClientCertificate: z.boolean().default(false),
    stateDir: z.string().min(1),
    keyFile: z.string().min(1).optional(),
    model: label,
    firmwareVersion: label,
    enrollmentToken: z.string().min(1).max(256).optional(),
    commandPublicKey: ed25519PublicKey.optional(),
    platform: z.discriminatedUnion("kind", [
      z.strictObject({ kind: z.literal("simulated"), root: z.string().min(1) }),
      /** A real Antminer-class board (agent/src/platform/antminer.ts): init scripts, iptables, upgrade CGI. */
      z.strictObject({
        kind: z.literal("antminer"),
        root: z.string().min(1).default("/"),
        /** Miner init scripts, first existing one wins (BusyBox: bmminer.sh on S9/S17/S19, cgminer.sh on older). */
        initScripts: z.array(devicePath).min(1).max(8).default(["/etc/init.d/bmminer.sh", "/etc/init.d/cgminer.sh"]),
        /** The vendor web upgrade CGIs (run any uploaded runme.sh as root). */
        upgradeCgiPaths: z.array(devicePath).max(8).default(["/www/pages/cgi-bin/upgrade.cgi", "/www/pages/cgi-bin/upgrade_clear.cgi"]),
        iptables: z.string().min(1).default("iptables"),
        /** Empty string: the board has no IPv6 firewall to manage. */
        ip6tables: z.string().default("ip6tables"),
        /**
         * A/B slots on a U-Boot board (agent/src/platform/uboot.ts, docs/board.md; HW-BOARD-2). Absent: the
         * board cannot update through the agent and every update is refused. Paths resolve under `root`.
         */
        slots: z
          .strictObject({
            a: slotDevice,
            b: slotDevice,
            fwEnvConfig: devicePath.default("/etc/fw_env.config"),
            /** Boots on trial before U-Boot falls back (hashward-boot.cmd counts with setexpr: 1..9). */
            bootlimit: z.number().int().min(1).max(9).default(3),
            rebootCommand: z.array(z.string().min(1).max(1024)).min(1).max(16).default(["reboot"]),
            /** Extra health check of a trial slot: a command that must exit 0. */
            healthCommand: z.array(z.string().min(1).max(1024)).min(1).max(16).optional(),
          })
          .refine((s) => slotDevicePath(s.a) !== slotDevicePath(s.b), { message: "slots a and b must be different devices", path: ["b"] })
          .optional(),
      }),
    ]),
    measure: z
      .strictObject({
        paths: z.array(devicePath).max(CAPS.measurePaths.max).default([]),
        includeAgentBinary: z.boolean().default(true),
      })
      .default({ paths: [], includeAgentBinary: true }),
    watch: z.boolean().default(true),
    /**
     * `monitor` only reports; `enforcing` also acts on the board: the vendor upgrade path stays disabled and
     * guards restore approved settings (approved pools, narrowed miner API access).
     */
    mode: z.enum(["monitor", "enforcing"]).default("monitor"),
    /** Miner guards (agent/src/guards; HW-GUARD-1..9): pool policy, API exposure, sockets, malware indicators. */
    guards: z
      .strictObject({
        enabled: z.boolean().default(true),
        intervalMs: z.number().int().min(CAPS.guardsIntervalMs.min).max(CAPS.guardsIntervalMs.max).default(10_000),
        /** The cgminer/bmminer JSON API. Absent: 127.0.0.1:4028 on an antminer platform, no miner API otherwise. */
        minerApi: z
          .strictObject({
            host: z.string().min(1).max(255).default("127.0.0.1"),
            port: z.number().int().min(1).max(65_535).default(4028),
            timeoutMs: z.number().int().min(100).max(60_000).default(3_000),
            maxResponseBytes: z.number().int().min(4096).max(16 * 1024 * 1024).default(1024 * 1024),
          })
          .optional(),
        minerConfigPaths: z.array(devicePath).max(16).default(["/config/bmminer.conf", "/config/cgminer.conf"]),
        /** Outbound destinations always allowed (host or host:port), on top of the signed policy's. */
        allowedHosts: z.array(z.string().min(1).max(300)).max(256).default([]),
        /** Non-loopback listening ports expected on the board (ssh, web UI, miner API). */
        allowedListenPorts: z.array(z.number().int().min(1).max(65_535)).max(256).default([22, 80, 443, 4028]),
        dnsTimeoutMs: z.number().int().min(100).max(30_000).default(2_000),
        dnsCacheMs: z.number().int().min(1_000).max(86_400_000).default(300_000),
      })
      .default({
        enabled: true,
        intervalMs: 10_000,
        minerConfigPaths: ["/config/bmminer.conf", "/config/cgminer.conf"],
        allowedHosts: [],
        allowedListenPorts: [22, 80, 443, 4028],
        dnsTimeoutMs: 2_000,
        dnsCacheMs: 300_000,
      }),
    /**
     * Signed updates (agent/src/update; HW-UPD-1..8). Without `trustedRootFile` every update command is refused:
     * the device's TUF root is provisioned, never taken from the plane.
     */
    update: z
      .strictObject({
        trustedRootFile: z.string().min(1).optional(),
        /** Default `<controlPlaneUrl>/tuf/metadata/`. */
        metadataUrl: httpUrl.optional(),
        /** Default `<controlPlaneUrl>/tuf/targets/`. */
        targetsUrl: httpUrl.optional(),
        maxImageBytes: z.number().int().min(CAPS.updateMaxImageBytes.min).max(CAPS.updateMaxImageBytes.max).default(512 * 1024 * 1024),
        metadataTimeoutMs: ms("updateMetadataTimeoutMs", 30_000),
        targetTimeoutMs: ms("updateTargetTimeoutMs", 1_800_000),
        /** A fetch that receives no byte for this long is aborted (a partitioned network, HW-FAULT-12). */
        stallTimeoutMs: ms("updateStallTimeoutMs", 60_000),
        /** Image downloads per update: an aborted one starts again from byte 0 after a backoff (HW-FAULT-12). */
        downloadAttempts: z.number().int().min(CAPS.updateDownloadAttempts.min).max(CAPS.updateDownloadAttempts.max).default(5),
      })
      .default({ maxImageBytes: 512 * 1024 * 1024, metadataTimeoutMs: 30_000, targetTimeoutMs: 1_800_000, stallTimeoutMs: 60_000, downloadAttempts: 5 }),
    heartbeatIntervalMs: ms("heartbeatIntervalMs", 10_000),
    attestIntervalMs: ms("attestIntervalMs", 300_000),
    reconnectMinMs: ms("reconnectMinMs", 500),
    reconnectMaxMs: ms("reconnectMaxMs", 30_000),
    enrollPollMs: ms("enrollPollMs", 5_000),
    outboxMaxEvents: z.number().int().min(CAPS.outboxMaxEvents.min).max(CAPS.outboxMaxEvents.max).default(1000),
    logLevel: z.enum(LOG_LEVELS).default("info"),
  })
  .refine((c) => c.reconnectMaxMs >= c.reconnectMinMs, {
    path: ["reconnectMaxMs"],
    message: "must be >= reconnectMinMs",
  });

export type AgentConfigInput = z.input<typeof agentConfigSchema>;
export type AgentConfig = z.output<typeof agentConfigSchema> & {
  keyFile: string;
  update: z.output<typeof agentConfigSchema>["update"] & { metadataUrl: string; targetsUrl: string };
};

type EnvKind = "string" | "int" | "bool" | "list";
/** Dotted key -> how its env override is parsed. Every config key is overridable. */
const ENV_KEYS: Record<string, EnvKind> = {
  controlPlaneUrl: "string",
  mqttUrl: "string",
  mqttCaFile: "string",
  caCertHash: "string",
  caFile: "string",
  trustOnFirstUse: "bool",
  allowPlaintext: "bool",
  mqttClientCertificate: "bool",
  stateDir: "string",
  keyFile: "string",
  model: "string",
  firmwareVersion: "string",
  enrollmentToken: "string",
  commandPublicKey: "string",
  "platform.kind": "string",
  "platform.root": "string",
  "measure.paths": "list",
  "measure.includeAgentBinary": "bool",
  watch: "bool",
  mode: "string",
  "guards.enabled": "bool",
  "guards.intervalMs": "int",
  "guards.minerApi.host": "string",
  "guards.minerApi.port": "int",
  "guards.minerConfigPaths": "list",
  "guards.allowedHosts": "list",
  "guards.allowedListenPorts": "list",
  "update.trustedRootFile": "string",
  "update.metadataUrl": "string",
  "update.targetsUrl": "string",
  "update.maxImageBytes": "int",
  "update.metadataTimeoutMs": "int",
  "update.targetTimeoutMs": "int",
  "update.stallTimeoutMs": "int",
  "update.downloadAttempts": "int",
  heartbeatIntervalMs: "int",
  attestIntervalMs: "int",
  reconnectMinMs: "int",
  reconnectMaxMs: "int",
  enrollPollMs: "int",
  outboxMaxEvents: "int",
  logLevel: "string",
};

export function envName(dottedKey: string): string {
  return `HASHWARD_AGENT_${dottedKey
    .split(".")
    .map((part) => part.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase())
    .join("_")}`;
}

function parseEnvValue(kind: EnvKind, raw: string, option: string): unknown {
  switch (kind) {
    case "string":
      return raw;
    case "int": {
      if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(`${option}: must be an integer (got ${JSON.stringify(raw)})`, option);
      return Number(raw.trim());
    }
    case "bool": {
      const v = raw.trim().toLowerCase();
      if (["1", "true", "yes", "on"].includes(v)) return true;
      if (["0", "false", "no", "off"].includes(v)) return false;
      throw new ConfigError(`${option}: must be true or false (got ${JSON.stringify(raw)})`, option);
    }
    case "list": {
      const trimmed = raw.trim();
      if (trimmed.startsWith("[")) {
        try {
          return JSON.parse(trimmed) as unknown;
        } catch {
          throw new ConfigError(`${option}: not a JSON array (got ${JSON.stringify(raw)})`, option);
        }
      }
      return trimmed === "" ? [] : trimmed.split(",").map((s) => s.trim());
    }
  }
}

function setDotted(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const parts = dotted.split(".");
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (typeof next !== "object" || next === null || Array.isArray(next)) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[parts[parts.length - 1]!] = value;
}

function getDotted(source: unknown, path: readonly PropertyKey[]): unknown {
  let node: unknown = source;
  for (const part of path) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<PropertyKey, unknown>)[part];
  }
  return node;
}

/**
 * Validates a raw config object (already merged with env overrides). `sources` maps dotted keys to the env
 * variable they came from, so errors name what the operator actually set.
 */
export function parseAgentConfig(raw: unknown, opts: { baseDir?: string; sources?: Map<string, string> } = {}): AgentConfig {
  const result = agentConfigSchema.safeParse(raw);
  if (!result.success) {
    // The shared converter names the field (the first unknown key for unknown keys); the message adds the env
    // variable the operator set, the value seen, and every unknown key at once.
    const { field, message, issue } = firstZodIssue(result.error);
    if (issue?.code === "unrecognized_keys") {
      const parent = issue.path.map(String).join(".");
      throw new ConfigError(`unknown option(s) ${issue.keys.map((k) => (parent ? `${parent}.${k}` : k)).join(", ")}`, field, { cause: result.error });
    }
    const key = field || "(root)";
    const option = opts.sources?.get(key) ?? key;
    const value = getDotted(raw, issue?.path ?? []);
    const shown = value === undefined ? "missing" : `got ${JSON.stringify(value)?.slice(0, 200)}`;
    throw new ConfigError(`${option}: ${message} (${shown})`, option, { cause: result.error });
  }
  const base = opts.baseDir ?? process.cwd();
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const config = result.data;
  const stateDir = abs(config.stateDir);
  return {
    ...config,
    stateDir,
    keyFile: config.keyFile ? abs(config.keyFile) : join(stateDir, "device.key"),
    ...(config.mqttCaFile ? { mqttCaFile: abs(config.mqttCaFile) } : {}),
    ...(config.caFile ? { caFile: abs(config.caFile) } : {}),
    platform: { ...config.platform, root: abs(config.platform.root) },
    update: {
      ...config.update,
      ...(config.update.trustedRootFile ? { trustedRootFile: abs(config.update.trustedRootFile) } : {}),
      metadataUrl: config.update.metadataUrl ?? new URL("tuf/metadata/", withSlash(config.controlPlaneUrl)).href,
      targetsUrl: config.update.targetsUrl ?? new URL("tuf/targets/", withSlash(config.controlPlaneUrl)).href,
    },
  };
}

const withSlash = (url: string) => (url.endsWith("/") ? url : `${url}/`);

/** Reads the JSON file, applies HASHWARD_AGENT_* overrides from `env`, validates. Throws ConfigError. */
export function loadAgentConfig(file: string, env: Record<string, string | undefined> = process.env): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (cause) {
    throw new ConfigError(`--config: cannot read ${file}: ${(cause as Error).message}`, "--config", { cause });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw new ConfigError(`--config: ${file} is not valid JSON: ${(cause as Error).message}`, "--config", { cause });
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(`--config: ${file} must hold a JSON object`, "--config");
  }
  const merged = structuredClone(raw) as Record<string, unknown>;
  const sources = new Map<string, string>();
  for (const [key, kind] of Object.entries(ENV_KEYS)) {
    const name = envName(key);
    const value = env[name];
    if (value === undefined) continue;
    setDotted(merged, key, parseEnvValue(kind, value, name));
    sources.set(key, name);
  }
  return parseAgentConfig(merged, { baseDir: dirname(resolve(file)), sources });
}
