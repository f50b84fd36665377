/**
 * The RabbitMQ hook endpoints over real HTTP (a listener on port 0), answering as rabbitmq_auth_backend_http
 * would ask: HW-BROKER-2 (secret), HW-AUTH-1 (connect token, single use, accepted only, client id = username),
 * HW-TOPIC-1 / HW-BROKER-1 (resources and routing keys), and the identity cache (a reconnect storm costs no lookups).
 */
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createConnectToken } from "../../../../shared/auth/connect-token.js";
import { deviceIdFromPublicKey, generateKeyPair, toBase64Url } from "../../../../shared/crypto/index.js";
import { FakeDeviceSide } from "../testing/fake-device-side.js";
import { createHookServer, resourceAllowed, topicAllowed, type HookServer } from "./hooks.js";

const SECRET = "s".repeat(40);
const A = "hw-0123456789abcdef01234567";
const B = "hw-89abcdef0123456789abcdef";
const form = (fields: Record<string, string>) => new URLSearchParams(fields);

describe("resource and topic checks (HW-BROKER-1, HW-TOPIC-1)", () => {
  const base = { username: A, vhost: "/", client_id: A };
  it.each([
    [{ resource: "queue", name: `mqtt-subscription-${A}qos1`, permission: "configure" }, true],
    [{ resource: "queue", name: `mqtt-subscription-${A}qos0`, permission: "read" }, true],
    [{ resource: "queue", name: `mqtt-subscription-${B}qos1`, permission: "read" }, false],
    [{ resource: "queue", name: "hashward.ingest", permission: "read" }, false],
    [{ resource: "exchange", name: "amq.topic", permission: "write" }, true],
    [{ resource: "exchange", name: "amq.topic", permission: "configure" }, false],
    [{ resource: "exchange", name: "amq.rabbitmq.event", permission: "read" }, false],
  ])("resource %o -> %s", (fields, allowed) => {
    expect(resourceAllowed(form({ ...base, ...fields }), "amq.topic", "/")).toBe(allowed);
  });

  it("refuses another vhost and a client id that is not the username", () => {
    expect(resourceAllowed(form({ ...base, vhost: "other", resource: "exchange", name: "amq.topic", permission: "write" }), "amq.topic", "/")).toBe(false);
    expect(resourceAllowed(form({ ...base, client_id: B, resource: "exchange", name: "amq.topic", permission: "write" }), "amq.topic", "/")).toBe(false);
  });

  const topic = { username: A, vhost: "/", resource: "topic", name: "amq.topic", "variable_map.client_id": A };
  it.each([
    ["write", `asic.v1.${A}.up.heartbeat`, true],
    ["write", `asic.v1.${A}.up.evidence`, true],
    ["write", `asic.v1.${B}.up.heartbeat`, false],
    ["write", `asic.v1.${A}.down.command`, false],
    ["write", `asic.v1.${A}.up.unknown`, false],
    ["read", `asic.v1.${A}.down.*`, true],
    ["read", `asic.v1.${A}.down.command`, true],
    ["read", `asic.v1.${B}.down.*`, false],
    ["read", `asic.v1.*.down.*`, false],
    ["read", "#", false],
    ["read", `asic.v1.${A}.up.*`, false],
  ])("topic %s %s -> %s", (permission, key, allowed) => {
    expect(topicAllowed(form({ ...topic, permission, routing_key: key }), "amq.topic", "/")).toBe(allowed);
  });
});

describe("hook listener", () => {
  let deviceSide: FakeDeviceSide;
  let hooks: HookServer;
  let url: string;
  const keys = generateKeyPair();
  const id = deviceIdFromPublicKey(keys.publicKey);

  beforeEach(async () => {
    deviceSide = new FakeDeviceSide();
    deviceSide.setIdentity(id, toBase64Url(keys.publicKey), "accepted");
    hooks = createHookServer({ deviceSide, logger: pino({ level: "silent" }), registry: new Registry(), secret: SECRET, exchange: "amq.topic", vhost: "/" });
    url = `http://127.0.0.1:${await hooks.listen(0, "127.0.0.1")}`;
  });
  afterEach(() => hooks.close());

  const ask = async (path: string, fields: Record<string, string>) => {
    const response = await fetch(`${url}${path}`, { method: "POST", body: form(fields) });
    return { status: response.status, body: await response.text() };
  };
  const login = (password: string, extra: Record<string, string> = {}) => ask(`/${SECRET}/user`, { username: id, password, vhost: "/", client_id: id, ...extra });

  it("answers nothing without the secret (HW-BROKER-2)", async () => {
    const token = createConnectToken(id, keys.privateKey, Date.now());
    for (const path of ["/user", `/${"s".repeat(39)}/user`, `/${SECRET}x/user`, `/${SECRET}/user/x`]) {
      expect(await ask(path, { username: id, password: token, vhost: "/", client_id: id }), path).toEqual({ status: 404, body: "" });
    }
    expect(deviceSide.usedNonces.size).toBe(0); // the token was not even looked at
  });

  it("allows a valid connect token once (HW-AUTH-1)", async () => {
    const token = createConnectToken(id, keys.privateKey, Date.now());
    expect((await login(token)).body).toBe("allow");
    expect((await login(token)).body).toBe("deny"); // replayed
  });

  it("refuses a foreign key's token, a client id that is not the username, and a device not accepted", async () => {
    const other = generateKeyPair();
    expect((await login(createConnectToken(id, other.privateKey, Date.now()))).body).toBe("deny");
    expect((await login(createConnectToken(id, keys.privateKey, Date.now()), { client_id: A })).body).toBe("deny");
    deviceSide.setIdentity(id, toBase64Url(keys.publicKey), "revoked");
    hooks.forget(id);
    expect((await login(createConnectToken(id, keys.privateKey, Date.now()))).body).toBe("deny");
  });

  it("answers reconnects from its identity cache", async () => {
    for (let i = 0; i < 20; i += 1) expect((await login(createConnectToken(id, keys.privateKey, Date.now()))).body).toBe("allow");
    expect(deviceSide.identityLookups).toBe(1);
  });
});
