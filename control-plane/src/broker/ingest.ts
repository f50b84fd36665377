/**
 * The device-message ingest both transports share (the embedded aedes broker, control-plane/src/broker/index.ts,
 * and the RabbitMQ consumer, control-plane/src/broker/rabbitmq/transport.ts): one parsed up/ message handed to
 * the DeviceSideService, and the metric reason a refused one is counted under.
 */
import { FreshnessError, ValidationError, VerificationError } from "../../../shared/errors/index.js";
import type { Ack, DeviceEvent, Evidence, Heartbeat, Hello, UpKind } from "../../../shared/protocol/index.js";
import { LivenessRefusal, type LivenessRejection } from "../errors.js";
import type { DeviceSession, DeviceSideService } from "../service/index.js";

/** A parsed up/ message of any kind. */
export type UpMessage = Hello | Heartbeat | Evidence | DeviceEvent | Ack;

/** A reason to drop an up/ message, for the metric label and the log. */
export function rejectionReason(kind: UpKind, error: unknown): "invalid" | "stale" | "unverified" | "internal" | "unsigned" | LivenessRejection {
  if (error instanceof LivenessRefusal) return error.reason; // HW-LIVE-1
  // HW-LIVE-1: a hello or heartbeat without its signature or connection binding (an outdated agent, or a forger).
  if (error instanceof ValidationError && (kind === "hello" || kind === "heartbeat") && (error.field === "sig" || error.field === "connectNonce")) {
    return "unsigned";
  }
  if (error instanceof ValidationError) return "invalid";
  if (error instanceof FreshnessError) return "stale"; // before VerificationError: it is a subclass
  if (error instanceof VerificationError) return "unverified";
  return "internal";
}

/**
 * Hands one schema-parsed up/ message (payload deviceId already checked against the topic's) to the device side.
 * `session` is the connection's (HW-LIVE-1); hello and heartbeat are verified against it. Resolves once the
 * handler committed (evidence, events, acks) or buffered (heartbeats); throws what the handler throws.
 */
export async function dispatchUp(deviceSide: DeviceSideService, message: UpMessage, session: () => DeviceSession): Promise<void> {
  switch (message.type) {
    case "hello":
      await deviceSide.onHello(message, session());
      break;
    case "heartbeat":
      await deviceSide.onHeartbeat(message, session());
      break;
    case "evidence":
      await deviceSide.onEvidence(message);
      break;
    case "event":
      await deviceSide.onEvent(message);
      break;
    case "ack":
      await deviceSide.onAck(message);
      break;
  }
}
