/**
 * HW-TOPIC-1: the topic ACL of a device, one definition for both brokers (the embedded aedes hooks in
 * ./index.ts and the RabbitMQ HTTP auth backend in ./rabbitmq/hooks.ts, which maps routing keys to topics first).
 * A device publishes only under its own up/ and receives only its own down/; pure string checks, no I/O.
 */
import { downFilter, parseTopic, type UpKind } from "../../../shared/protocol/index.js";

/**
 * HW-TOPIC-1: the kind of up/ message `deviceId` may publish on `topic` (exactly `asic/v1/<deviceId>/up/<kind>`
 * with a known kind), or null when the topic is not the device's own up/ topic (the publish is refused).
 */
export function ownUpKind(deviceId: string, topic: string): UpKind | null {
  const parsed = parseTopic(topic);
  return parsed !== null && parsed.direction === "up" && parsed.deviceId === deviceId ? parsed.kind : null;
}

/** HW-TOPIC-1: true when `topic` is a concrete down/ topic of `deviceId` (what it may receive). */
export function isOwnDownTopic(deviceId: string, topic: string): boolean {
  const parsed = parseTopic(topic);
  return parsed !== null && parsed.direction === "down" && parsed.deviceId === deviceId;
}

/** HW-TOPIC-1: `deviceId` may subscribe to its own down/ filter (`asic/v1/<id>/down/+`) or one of its concrete down/ topics. */
export function maySubscribe(deviceId: string, filter: string): boolean {
  return filter === downFilter(deviceId) || isOwnDownTopic(deviceId, filter);
}
