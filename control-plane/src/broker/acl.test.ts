/**
 * HW-TOPIC-1 as every broker mode decides it (embedded aedes, RabbitMQ hooks, EMQX hooks share these functions),
 * with the siblings an attacker would try: wildcards, other devices, the other direction, shared subscriptions.
 */
import { describe, expect, it } from "vitest";
import { isOwnDownTopic, maySubscribe, ownUpKind } from "./acl.js";

const A = "hw-0123456789abcdef01234567";
const B = "hw-89abcdef0123456789abcdef";

describe("topic ACL (HW-TOPIC-1), shared by the embedded broker and the RabbitMQ and EMQX hooks", () => {
  it.each([
    [`asic/v1/${A}/up/heartbeat`, "heartbeat"],
    [`asic/v1/${A}/up/evidence`, "evidence"],
    [`asic/v1/${B}/up/heartbeat`, null],
    [`asic/v1/${A}/down/command`, null],
    [`asic/v1/${A}/up/unknown`, null],
    [`asic/v1/${A}/up/+`, null],
    [`asic/v1/${A}/up/heartbeat/extra`, null],
    [`asic/v2/${A}/up/heartbeat`, null],
    [`asic/v1/${A}/up/ack`, "ack"],
    [`asic/v1/${A}/up/#`, null],
    [`asic/v1/+/up/heartbeat`, null],
    [`$share/g/asic/v1/${A}/up/heartbeat`, null],
    ["", null],
  ])("publish on %s -> %s", (topic, kind) => {
    expect(ownUpKind(A, topic)).toBe(kind);
  });

  it.each([
    [`asic/v1/${A}/down/+`, true],
    [`asic/v1/${A}/down/command`, true],
    [`asic/v1/${A}/down/#`, false],
    [`asic/v1/+/down/+`, false],
    [`asic/v1/${B}/down/+`, false],
    [`asic/v1/${A}/up/+`, false],
    ["#", false],
    [`asic/v1/${A}/down/challenge`, true],
    [`$share/g/asic/v1/${A}/down/+`, false],
  ])("subscribe to %s -> %s", (filter, allowed) => {
    expect(maySubscribe(A, filter)).toBe(allowed);
  });

  it("delivers only a concrete own down/ topic", () => {
    expect(isOwnDownTopic(A, `asic/v1/${A}/down/challenge`)).toBe(true);
    expect(isOwnDownTopic(A, `asic/v1/${B}/down/challenge`)).toBe(false);
    expect(isOwnDownTopic(A, `asic/v1/${A}/down/+`)).toBe(false);
  });
});
