/**
 * Connected state from EMQX's client events. The payloads are shaped as EMQX's "System Topic" page documents them
 * (docs.emqx.com, observability/mqtt-system-topics: "Client Online and Offline Events", the `connected` and
 * `disconnected` JSON examples), with a device's id as client id and username.
 */
import { describe, expect, it } from "vitest";
import { DeviceConnections, parseClientEvent } from "./client-events.js";

const A = "hw-0123456789abcdef01234567";
const connected = (clientid: string, username: string) =>
  Buffer.from(
    JSON.stringify({ username, ts: 1625572213873, sockport: 8883, proto_ver: 4, proto_name: "MQTT", keepalive: 60, ipaddress: "10.0.0.7", expiry_interval: 0, connected_at: 1625572213873, connack: 0, clientid, clean_start: true }),
  );
const disconnected = (clientid: string, username: string) => Buffer.from(JSON.stringify({ username, ts: 1625572213999, reason: "tcp_closed", disconnected_at: 1625572213999, clientid }));

describe("EMQX client events", () => {
  it("reads a device's online and offline events", () => {
    expect(parseClientEvent(`$SYS/brokers/emqx@10.0.0.1/clients/${A}/connected`, connected(A, A))).toEqual({ deviceId: A, event: "connected" });
    expect(parseClientEvent(`$SYS/brokers/emqx@10.0.0.1/clients/${A}/disconnected`, disconnected(A, A))).toEqual({ deviceId: A, event: "disconnected" });
  });

  it.each([
    ["another client (the plane's own)", "$SYS/brokers/n/clients/hashward-plane-x-control/connected", connected("hashward-plane-x-control", "hashward-plane")],
    ["a username that is not the client id", `$SYS/brokers/n/clients/${A}/connected`, connected(A, "someone")],
    ["a payload that is not JSON", `$SYS/brokers/n/clients/${A}/connected`, Buffer.from("{")],
    ["a payload that is JSON null", `$SYS/brokers/n/clients/${A}/connected`, Buffer.from("null")],
    ["another event", `$SYS/brokers/n/clients/${A}/subscribed`, connected(A, A)],
    ["another $SYS topic", `$SYS/brokers/n/stats/${A}/connected`, connected(A, A)],
    ["a device topic", `asic/v1/${A}/up/connected`, connected(A, A)],
  ])("ignores %s", (_, topic, payload) => {
    expect(parseClientEvent(topic, payload)).toBeNull();
  });

  it("counts connections: a takeover reported new-before-old keeps the device connected", () => {
    const connections = new DeviceConnections();
    expect(connections.apply({ deviceId: A, event: "connected" })).toBe("connected");
    expect(connections.apply({ deviceId: A, event: "connected" })).toBeNull(); // the new session of a takeover
    expect(connections.apply({ deviceId: A, event: "disconnected" })).toBeNull(); // the old one's end
    expect(connections.has(A)).toBe(true);
    expect(connections.apply({ deviceId: A, event: "disconnected" })).toBe("disconnected");
    expect(connections.has(A)).toBe(false);
    expect(connections.apply({ deviceId: A, event: "disconnected" })).toBeNull(); // never seen begin: no change
    expect(connections.size).toBe(0);
  });
});
