/**
 * Connected state in EMQX mode from EMQX's client online/offline events (docs.emqx.com, "System Topic"):
 * `$SYS/brokers/<node>/clients/<clientid>/connected|disconnected`, JSON payloads carrying `clientid` and
 * `username`. Every replica subscribes to them (not shared), so each knows which devices are connected.
 */
import { isDeviceId } from "../../../../shared/protocol/index.js";

/** The filter the plane subscribes to for both events. */
export const CLIENT_EVENTS_FILTER = "$SYS/brokers/+/clients/+/+";

/** One device's online or offline event. */
export interface ClientEvent {
  deviceId: string;
  event: "connected" | "disconnected";
}

/**
 * The device event a `$SYS` message carries, or null when it is about something else: another topic, a client that
 * is not a device (the plane's own), a payload that is not JSON, or a username that is not the client id (the
 * hooks admit a device only with username = client id, so such a client never authenticated as a device).
 */
export function parseClientEvent(topic: string, payload: Buffer): ClientEvent | null {
  const [sys, brokers, , clients, clientid, event, ...rest] = topic.split("/");
  if (sys !== "$SYS" || brokers !== "brokers" || clients !== "clients" || rest.length > 0) return null;
  if (clientid === undefined || !isDeviceId(clientid) || (event !== "connected" && event !== "disconnected")) return null;
  let username: unknown;
  try {
    username = (JSON.parse(payload.toString("utf8")) as { username?: unknown } | null)?.username;
  } catch {
    return null;
  }
  return username === clientid ? { deviceId: clientid, event } : null;
}

/**
 * Live connections per device from the events, counted: on a session takeover EMQX may report the new connection
 * before the old one's end, so a device is disconnected only when every connection it opened has ended.
 */
export class DeviceConnections {
  private readonly counts = new Map<string, number>();

  /** Applies one event; answers the device's change (`connected` when its first, `disconnected` when its last), else null. */
  apply({ deviceId, event }: ClientEvent): "connected" | "disconnected" | null {
    const count = this.counts.get(deviceId) ?? 0;
    if (event === "connected") {
      this.counts.set(deviceId, count + 1);
      return count === 0 ? "connected" : null;
    }
    if (count === 0) return null; // the end of a connection this replica never saw begin
    if (count > 1) {
      this.counts.set(deviceId, count - 1);
      return null;
    }
    this.counts.delete(deviceId);
    return "disconnected";
  }

  /** Whether the device has a live connection. */
  has(deviceId: string): boolean {
    return this.counts.has(deviceId);
  }

  /** Devices with a live connection. */
  get size(): number {
    return this.counts.size;
  }
}
