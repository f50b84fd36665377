/**
 * MQTT topics are versioned and per device (HW-TOPIC-1):
 *   asic/v1/<deviceId>/up/<kind>    agent -> plane
 *   asic/v1/<deviceId>/down/<kind>  plane -> agent
 * Rule HW-TOPIC-1: a device publishes only under its own up/ and subscribes only to its own down/.
 */
export const TOPIC_ROOT = "asic/v1";

export const UP_KINDS = ["hello", "heartbeat", "evidence", "event", "ack"] as const;
export const DOWN_KINDS = ["challenge", "command"] as const;
export type UpKind = (typeof UP_KINDS)[number];
export type DownKind = (typeof DOWN_KINDS)[number];

const DEVICE_ID = /^hw-[0-9a-f]{24}$/;

export function isDeviceId(value: string): boolean {
  return DEVICE_ID.test(value);
}

export function upTopic(deviceId: string, kind: UpKind): string {
  return `${TOPIC_ROOT}/${deviceId}/up/${kind}`;
}

export function downTopic(deviceId: string, kind: DownKind): string {
  return `${TOPIC_ROOT}/${deviceId}/down/${kind}`;
}

/** The one subscription an agent makes: every down/ kind for itself. */
export function downFilter(deviceId: string): string {
  return `${TOPIC_ROOT}/${deviceId}/down/+`;
}

/** The plane's ingest subscription (or `$share/<group>/...` on an external MQTT 5 broker). */
export const UP_FILTER = `${TOPIC_ROOT}/+/up/+`;

export type ParsedTopic =
  | { direction: "up"; deviceId: string; kind: UpKind }
  | { direction: "down"; deviceId: string; kind: DownKind };

/** Parses a concrete topic; returns null for anything that is not exactly one of ours (no wildcards). */
export function parseTopic(topic: string): ParsedTopic | null {
  const parts = topic.split("/");
  if (parts.length !== 5 || `${parts[0]}/${parts[1]}` !== TOPIC_ROOT) return null;
  const [, , deviceId, direction, kind] = parts as [string, string, string, string, string];
  if (!isDeviceId(deviceId)) return null;
  if (direction === "up" && (UP_KINDS as readonly string[]).includes(kind)) {
    return { direction, deviceId, kind: kind as UpKind };
  }
  if (direction === "down" && (DOWN_KINDS as readonly string[]).includes(kind)) {
    return { direction, deviceId, kind: kind as DownKind };
  }
  return null;
}
