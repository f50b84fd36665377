/**
 * The broker's Prometheus metrics (listed in ./README.md). The embedded broker and the external brokers' hooks,
 * ingest and transports register them through these functions, so every mode counts under one name, one label
 * set and one help text.
 */
import { Counter, Gauge, type Registry } from "prom-client";

/** `hashward_mqtt_connect_refused_total{reason}` (reason: a RefusalReason of ./auth.ts), registered on `registry`. */
export function connectRefusedCounter(registry: Registry): Counter<"reason"> {
  return counter(registry, "hashward_mqtt_connect_refused_total", "MQTT CONNECTs refused, by reason", ["reason"]);
}

/** The message counters every transport registers (embedded aedes, RabbitMQ, EMQX), one definition. */
export interface IngestMetrics {
  messagesTotal: Counter<"kind">;
  messagesRejected: Counter<"kind" | "reason">;
  /** HW-FAULT-2: messages tried again because handling failed on an unreachable database. */
  ingestRetries: Counter<"kind">;
}

/** Registers `hashward_mqtt_messages_total{kind}`, `hashward_mqtt_messages_rejected_total{kind,reason}` and `hashward_mqtt_ingest_retries_total{kind}`. */
export function ingestMetrics(registry: Registry): IngestMetrics {
  return {
    messagesTotal: counter(registry, "hashward_mqtt_messages_total", "Device messages accepted and handled, by kind", ["kind"]),
    messagesRejected: counter(
      registry,
      "hashward_mqtt_messages_rejected_total",
      "Device messages dropped, by kind and reason (invalid, device-mismatch, stale, unverified, internal, unavailable: the database was unreachable; with an external broker also oversize, foreign-topic, not-accepted; for hello and heartbeat also unsigned, bad-signature, wrong-connection, replay, clock)",
      ["kind", "reason"],
    ),
    ingestRetries: counter(registry, "hashward_mqtt_ingest_retries_total", "Device messages tried again because the database was unreachable (HW-FAULT-2), by kind", ["kind"]),
  };
}

/** Registers the gauge `hashward_mqtt_connected_devices`, which reads `liveDevices()` at scrape time. */
export function connectedDevicesGauge(registry: Registry, liveDevices: () => number): void {
  new Gauge({
    name: "hashward_mqtt_connected_devices",
    help: "Devices with a live authenticated MQTT connection",
    registers: [registry],
    collect() {
      this.set(liveDevices());
    },
  });
}

/** The embedded broker's counters (the ingest metrics and its own). */
export interface BrokerMetrics extends IngestMetrics {
  aclDenied: Counter<"action" | "reason">;
  sessionTakeovers: Counter;
  connectRefused: Counter<"reason">;
}

/** A counter registered on `registry`. */
function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
  return new Counter({ name, help, labelNames, registers: [registry] });
}

/** Registers the embedded broker's metrics on `registry`; `liveDevices` is read by `hashward_mqtt_connected_devices`. */
export function brokerMetrics(registry: Registry, liveDevices: () => number): BrokerMetrics {
  connectedDevicesGauge(registry, liveDevices);
  return {
    ...ingestMetrics(registry),
    aclDenied: counter(registry, "hashward_mqtt_acl_denied_total", "Publishes/subscriptions refused by the topic ACL or size cap (the client is disconnected)", ["action", "reason"]),
    sessionTakeovers: counter(registry, "hashward_mqtt_session_takeovers_total", "Authenticated CONNECTs that took over a device's live session (HW-AUTH-2)"),
    connectRefused: connectRefusedCounter(registry),
  };
}
