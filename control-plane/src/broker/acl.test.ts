/**
 * HW-TOPIC-1 as every broker mode decides it (embedded aedes, RabbitMQ hooks, EMQX hooks share these functions),
 * with the siblings an attacker would try: wildcards, other devices, the other direction, shared subscriptions.
 */
import { describe, expect, it } from "vitest";
import { maySubscribe, ownUpKind } from "./acl.js";

const A = "hw-0123456789abcdef01234567";
const B = "hw-89abcdef0123456789abcdef";

describe("device topic policy (HW-TOPIC-1)", () => {
  it.each([
    [`asic/v1/${A}/up/heartbeat`, true],
    [`asic/v1/${A}/up/evidence`, true],
    [`asic/v1/${A}/up/ack`, true],
    [`asic/v1/${B}/up/heartbeat`, false],
    [`asic/v1/${A}/down/command`, false],
    [`asic/v1/${A}/up/unknown`, false],
    [`asic/v1/${A}/up/+`, false],
    [`asic/v1/${A}/up/#`, false],
    [`asic/v1/+/up/heartbeat`, false],
    [`$share/g/asic/v1/${A}/up/heartbeat`, false],
    ["", false],
  ])("publish %s -> %s", (topic, allowed) => {
    expect(ownUpKind(A, topic) !== null).toBe(allowed);
  });

  it.each([
    [`asic/v1/${A}/down/+`, true],
    [`asic/v1/${A}/down/command`, true],
    [`asic/v1/${A}/down/challenge`, true],
    [`asic/v1/${A}/down/#`, false],
    [`asic/v1/${B}/down/+`, false],
    [`asic/v1/+/down/+`, false],
    [`asic/v1/${A}/up/+`, false],
    ["#", false],
    [`$share/g/asic/v1/${A}/down/+`, false],
  ])("subscribe %s -> %s", (filter, allowed) => {
    expect(maySubscribe(A, filter)).toBe(allowed);
  });
});
