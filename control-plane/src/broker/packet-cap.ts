/**
 * Limits the embedded broker sets on a client's packet parser, before aedes sees a packet: the SUBACK's QoS grant
 * (HW-MQTT-1) and the packet size (refused as soon as the fixed header announces it). aedes 1.2 offers no option
 * for either; when its internals differ these do nothing and the hooks in ./index.ts still enforce both, later.
 */
import type { EventEmitter } from "node:events";
import type { Client } from "aedes";

/** The highest QoS the broker delivers with: the plane publishes commands and challenges at QoS 1. */
export const MAX_GRANTED_QOS = 1;

/** Topic, length prefixes and message id on top of the payload, bytes. */
export const PACKET_OVERHEAD_BYTES = 1_024;

/**
 * HW-MQTT-1: a SUBACK grants min(requested, MAX_GRANTED_QOS) ([MQTT-3.9.3-1]: the granted QoS is the maximum the
 * server delivers with). aedes 1.2 copies the requested QoS into the SUBACK before authorizeSubscribe runs, so
 * the requested QoS is lowered as the SUBSCRIBE packet leaves the parser, before any handler sees it. When the
 * internals differ, authorizeSubscribe still caps the QoS actually delivered.
 */
export function capSubscribeQos(client: Client): void {
  const parser = (client as unknown as { _parser?: EventEmitter })._parser;
  if (!parser || typeof parser.prependListener !== "function") return;
  parser.prependListener("packet", (packet: { cmd?: string; subscriptions?: { qos: number }[] }) => {
    if (packet.cmd !== "subscribe" || !Array.isArray(packet.subscriptions)) return;
    for (const subscription of packet.subscriptions) {
      subscription.qos = Math.min(subscription.qos, MAX_GRANTED_QOS);
    }
  });
}

interface PacketParser {
  packet: { length: number };
  _parseLength(): boolean;
  _emitError(error: Error): void;
}

/**
 * Refuses a packet longer than `maxPacketBytes` as soon as its fixed header announces the length, before buffering
 * the body (mqtt-packet's parser lives on client._parser); `onRefused` runs first (count, log), then the parser
 * errors and aedes closes the connection. When the internals differ the size check in authorizePublish still
 * applies, after buffering.
 */
export function capPacketSize(client: Client, maxPacketBytes: number, onRefused: () => void): void {
  const parser = (client as unknown as { _parser?: PacketParser })._parser;
  if (!parser || typeof parser._parseLength !== "function" || typeof parser._emitError !== "function") return;
  const parseLength = parser._parseLength;
  parser._parseLength = function cappedParseLength(this: PacketParser): boolean {
    const complete = parseLength.call(this);
    if (complete && this.packet.length > maxPacketBytes) {
      onRefused();
      this._emitError(new Error(`packet of ${this.packet.length} bytes exceeds ${maxPacketBytes}`));
      return false;
    }
    return complete;
  };
}
