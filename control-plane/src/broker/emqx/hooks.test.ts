/**
 * Contract tests of the EMQX hook endpoints (HW-BROKER-1, HW-BROKER-2, HW-AUTH-1, HW-TOPIC-1): the requests are the
 * ones the documented configuration makes EMQX 5 send. The `url`, `headers` and `body` of the HTTP authenticator
 * and the HTTP authorizer are read out of docs/emqx.md's emqx.conf and rendered as EMQX renders placeholders:
 * each `${name}` inside a string is replaced by the client's value (docs.emqx.com, "Access Control > Authentication
 * > Use HTTP Service" for ${clientid} ${username} ${password} ${peerhost}; "Authorization > Use HTTP Service" for
 * ${action} (`publish` | `subscribe`), ${topic}, ${qos}, ${retain}), POST with a JSON body. The answers are read the
 * way those pages say EMQX reads them: 200 with `{"result": "allow" | "deny" | "ignore"}` (authn adds
 * `is_superuser`); any other status is `ignore`. So the plane must answer 200 allow/deny to the broker, never
 * ignore, and answer a caller without the secret nothing.
 */
import { readFileSync } from "node:fs";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createConnectToken } from "../../../../shared/auth/connect-token.js";
import { deviceIdFromPublicKey, generateKeyPair, toBase64Url } from "../../../../shared/crypto/index.js";
import { FakeDeviceSide } from "../testing/fake-device-side.js";
import { createEmqxHooks, PLANE_USERNAME, type EmqxHooks } from "./hooks.js";

const SECRET = "e".repeat(40);
const DOC = readFileSync(new URL("../../../../docs/emqx.md", import.meta.url), "utf8");

interface DocumentedRequest {
  path: string;
  headers: Record<string, string>;
  body: Record<string, string>;
}

/** `key = "value"` lines of the `name { ... }` block inside `section` of the documented emqx.conf. */
function blockOf(section: string, name: string): Record<string, string> {
  const start = section.indexOf(`${name} {`);
  if (start < 0) throw new Error(`no ${name} block in docs/emqx.md`);
  const end = /\n\s*\}/.exec(section.slice(start)); // a line of its own: `${name}` placeholders hold braces too
  const block = section.slice(start, end === null ? undefined : start + end.index);
  return Object.fromEntries([...block.matchAll(/^\s*"?([\w-]+)"?\s*=\s*"([^"]*)"\s*$/gm)].map((m) => [m[1]!, m[2]!]));
}

/** The authenticator's or authorizer's request template, as documented. */
function documented(kind: "authentication" | "authorization"): DocumentedRequest {
  const conf = DOC.slice(DOC.indexOf("```hocon"));
  const start = conf.indexOf(kind === "authentication" ? "authentication = [" : "authorization {");
  const section = conf.slice(start, conf.indexOf(kind === "authentication" ? "authorization {" : "mqtt {"));
  const url = /url = "([^"]+)"/.exec(section)?.[1];
  if (!url) throw new Error(`no url in the ${kind} block of docs/emqx.md`);
  return { path: new URL(url).pathname, headers: blockOf(section, "headers"), body: blockOf(section, "body") };
}

/** `${name}` placeholders replaced by the client's values, the secret placeholder by the plane's secret. */
function render(template: Record<string, string>, values: Record<string, string>, secret: string): Record<string, string> {
  return Object.fromEntries(
    Object.entries(template).map(([key, value]) => [
      key,
      value.replace(/\$\{(\w+)\}/g, (_, name: string) => values[name] ?? "").replace("<HASHWARD_BROKER_HOOK_SECRET>", secret),
    ]),
  );
}

const A = "hw-0123456789abcdef01234567";
const B = "hw-89abcdef0123456789abcdef";

describe("EMQX hooks: the documented requests (HW-BROKER-5)", () => {
  const authn = documented("authentication");
  const authz = documented("authorization");
  const keys = generateKeyPair();
  const id = deviceIdFromPublicKey(keys.publicKey);
  let deviceSide: FakeDeviceSide;
  let hooks: EmqxHooks;
  let base: string;

  beforeEach(async () => {
    deviceSide = new FakeDeviceSide();
    deviceSide.setIdentity(id, toBase64Url(keys.publicKey), "accepted");
    hooks = createEmqxHooks({ deviceSide, logger: pino({ level: "silent" }), registry: new Registry(), secret: SECRET });
    base = `http://127.0.0.1:${await hooks.listen(0, "127.0.0.1")}`;
  });
  afterEach(() => hooks.close());

  /** Sends what EMQX sends for `template` with these client values; `secret` is what the emqx.conf header carries. */
  async function send(request: DocumentedRequest, values: Record<string, string>, secret = SECRET) {
    const response = await fetch(`${base}${request.path}`, { method: "POST", headers: render(request.headers, {}, secret), body: JSON.stringify(render(request.body, values, secret)) });
    const text = await response.text();
    return { status: response.status, type: response.headers.get("content-type"), text, json: text === "" ? null : (JSON.parse(text) as unknown) };
  }
  const connect = (values: Partial<Record<"clientid" | "username" | "password" | "peerhost" | "cert_common_name", string>>) =>
    send(authn, { clientid: id, username: id, peerhost: "10.0.0.7", ...values });
  const token = (at = Date.now()) => createConnectToken(id, keys.privateKey, at);

  it("documents a body with every field the checks need", () => {
    expect(Object.keys(authn.body).sort()).toEqual(["cert_common_name", "clientid", "password", "peerhost", "username"]);
    expect(Object.keys(authz.body).sort()).toEqual(["action", "clientid", "qos", "retain", "topic", "username"]);
    expect(authn.headers.authorization).toBe("Bearer <HASHWARD_BROKER_HOOK_SECRET>");
    expect(authz.headers.authorization).toBe("Bearer <HASHWARD_BROKER_HOOK_SECRET>");
  });

  describe("authentication (HW-AUTH-1)", () => {
    it("allows an enrolled, accepted device with a valid connect token, as a device (not superuser)", async () => {
      const answer = await connect({ password: token() });
      expect(answer).toMatchObject({ status: 200, json: { result: "allow", is_superuser: false } });
      expect(answer.type).toMatch(/^application\/json/);
    });

    it("denies the same token a second time (single use)", async () => {
      const once = token();
      expect((await connect({ password: once })).json).toEqual({ result: "allow", is_superuser: false });
      expect(await connect({ password: once })).toMatchObject({ status: 200, json: { result: "deny" } });
    });

    it.each([
      ["an expired token", () => createConnectToken(id, keys.privateKey, Date.now() - 20 * 60_000)],
      ["a token of another key", () => createConnectToken(id, generateKeyPair().privateKey, Date.now())],
      ["a tampered token", () => `${token().slice(0, -2)}AA`],
      ["an empty password", () => ""],
      ["a 3 KB password", () => "x".repeat(3_000)],
    ])("denies %s", async (_, password) => {
      expect(await connect({ password: password() })).toMatchObject({ status: 200, json: { result: "deny" } });
    });

    it("denies a client id that is not the username, and a username that is not a device id", async () => {
      expect((await connect({ clientid: A, password: token() })).json).toEqual({ result: "deny" });
      expect((await connect({ username: "admin", clientid: "admin", password: token() })).json).toEqual({ result: "deny" });
    });

    it("denies an unknown device", async () => {
      const other = generateKeyPair();
      const otherId = deviceIdFromPublicKey(other.publicKey);
      const answer = await send(authn, { clientid: otherId, username: otherId, password: createConnectToken(otherId, other.privateKey, Date.now()), peerhost: "10.0.0.8" });
      expect(answer).toMatchObject({ status: 200, json: { result: "deny" } });
    });

    it.each(["revoked", "pending", "rejected"] as const)("denies a %s device", async (state) => {
      deviceSide.setIdentity(id, toBase64Url(keys.publicKey), state);
      expect((await connect({ password: token() })).json).toEqual({ result: "deny" });
    });

    it("denies a device revoked after it connected once this plane forgets its cached identity (revoke)", async () => {
      expect((await connect({ password: token() })).json).toMatchObject({ result: "allow" });
      deviceSide.setIdentity(id, toBase64Url(keys.publicKey), "revoked");
      hooks.forget(id);
      expect((await connect({ password: token() })).json).toEqual({ result: "deny" });
    });

    it("allows the plane's own client with the secret, as superuser; denies it any other password", async () => {
      expect((await send(authn, { clientid: "hashward-plane-a", username: PLANE_USERNAME, password: SECRET })).json).toEqual({ result: "allow", is_superuser: true });
      expect((await send(authn, { clientid: "hashward-plane-a", username: PLANE_USERNAME, password: `${SECRET}x` })).json).toEqual({ result: "deny" });
      expect((await send(authn, { clientid: "hashward-plane-a", username: PLANE_USERNAME, password: "" })).json).toEqual({ result: "deny" });
    });

    it("answers deny, never ignore or a 5xx, when the database fails (HW-BROKER-6)", async () => {
      deviceSide.identitiesForConnect = () => Promise.reject(new Error("connection terminated"));
      expect(await connect({ password: token() })).toMatchObject({ status: 200, json: { result: "deny" } });
    });

    it("with client certificates required (HW-MTLS-1), allows only the device whose certificate CN is its username", async () => {
      await hooks.close();
      hooks = createEmqxHooks({ deviceSide, logger: pino({ level: "silent" }), registry: new Registry(), secret: SECRET, requireClientCertificate: true });
      base = `http://127.0.0.1:${await hooks.listen(0, "127.0.0.1")}`;
      expect((await connect({ password: token(), cert_common_name: id })).json).toEqual({ result: "allow", is_superuser: false });
      for (const cn of [A, "", "undefined"]) expect((await connect({ password: token(), cert_common_name: cn })).json, cn).toEqual({ result: "deny" });
      expect((await connect({ password: token() })).json).toEqual({ result: "deny" }); // no certificate: EMQX renders ""
    });

    it("ignores the certificate CN when client certificates are not required", async () => {
      expect((await connect({ password: token(), cert_common_name: A })).json).toEqual({ result: "allow", is_superuser: false });
    });

    it("answers a reconnect storm from its identity cache: 20 CONNECTs, one lookup", async () => {
      for (let i = 0; i < 20; i += 1) expect((await connect({ password: token() })).json).toMatchObject({ result: "allow" });
      expect(deviceSide.identityLookups).toBe(1);
    });
  });

  describe("authorization (HW-TOPIC-1)", () => {
    const ask = (values: Record<string, string>) => send(authz, { clientid: A, username: A, qos: "1", retain: "false", ...values });

    it.each([
      ["publish", `asic/v1/${A}/up/heartbeat`, "allow"],
      ["publish", `asic/v1/${A}/up/evidence`, "allow"],
      ["publish", `asic/v1/${A}/up/event`, "allow"],
      ["publish", `asic/v1/${A}/up/ack`, "allow"],
      ["publish", `asic/v1/${B}/up/heartbeat`, "deny"],
      ["publish", `asic/v1/${A}/down/command`, "deny"],
      ["publish", `asic/v1/${A}/up/unknown`, "deny"],
      ["publish", `asic/v1/${A}/up/+`, "deny"],
      ["publish", "asic/v1/+/up/heartbeat", "deny"],
      ["subscribe", `asic/v1/${A}/down/+`, "allow"],
      ["subscribe", `asic/v1/${A}/down/command`, "allow"],
      ["subscribe", `asic/v1/${A}/down/#`, "deny"],
      ["subscribe", `asic/v1/${B}/down/+`, "deny"],
      ["subscribe", "asic/v1/+/down/+", "deny"],
      ["subscribe", "#", "deny"],
      ["subscribe", `asic/v1/${A}/up/+`, "deny"],
      ["subscribe", `$share/g/asic/v1/${A}/down/+`, "deny"],
      ["subscribe", "$share/hashward/asic/v1/+/up/+", "deny"],
      ["subscribe", "$SYS/brokers/+/clients/+/connected", "deny"],
      ["all", `asic/v1/${A}/up/heartbeat`, "deny"],
    ])("%s %s -> %s", async (action, topic, result) => {
      expect(await ask({ action, topic })).toMatchObject({ status: 200, json: { result } });
    });

    it("denies a retained publish to the device's own up topic", async () => {
      expect((await ask({ action: "publish", topic: `asic/v1/${A}/up/heartbeat`, retain: "true" })).json).toEqual({ result: "deny" });
    });

    it("denies a device whose client id is not its username", async () => {
      expect((await ask({ action: "publish", topic: `asic/v1/${A}/up/heartbeat`, clientid: B })).json).toEqual({ result: "deny" });
    });

    it("allows the plane's own client (superuser: EMQX should not ask; if it does, allow)", async () => {
      expect((await ask({ username: PLANE_USERNAME, clientid: "hashward-plane-a", action: "subscribe", topic: "$share/hashward/asic/v1/+/up/+" })).json).toEqual({ result: "allow" });
    });
  });

  describe("only the broker is answered (HW-BROKER-2)", () => {
    it("answers a request without the secret 401 and nothing else; the token is not even looked at", async () => {
      const password = token();
      for (const secret of ["", "x", SECRET.slice(1), `${SECRET}x`, SECRET.toUpperCase()]) {
        const answer = await send(authn, { clientid: id, username: id, password, peerhost: "10.0.0.7" }, secret);
        expect({ status: answer.status, text: answer.text }, secret).toEqual({ status: 401, text: "" });
      }
      expect(deviceSide.usedNonces.size).toBe(0);
      expect(deviceSide.identityLookups).toBe(0);
    });

    it("answers no other path, no GET, and not the secret in the path", async () => {
      const headers = render(authn.headers, {}, SECRET);
      expect((await fetch(`${base}/emqx/other`, { method: "POST", headers, body: "{}" })).status).toBe(401);
      expect((await fetch(`${base}${authn.path}`, { method: "GET", headers })).status).toBe(401);
      expect((await fetch(`${base}/${SECRET}${authn.path}`, { method: "POST", body: "{}" })).status).toBe(401);
    });

    it("refuses a body over 8 KiB with 413 and says why", async () => {
      const answer = await connect({ password: "x".repeat(9_000) });
      expect(answer.status).toBe(413);
      expect(answer.json).toMatchObject({ result: "deny", message: expect.stringContaining("8192") });
      expect(deviceSide.identityLookups).toBe(0);
    });

    it("denies a body that is not a JSON object (a broken body template; HW-BROKER-6)", async () => {
      const headers = render(authz.headers, {}, SECRET);
      for (const body of ["not json", "[1,2]", "null", '"x"']) {
        const response = await fetch(`${base}${authz.path}`, { method: "POST", headers, body });
        expect({ status: response.status, json: await response.json() }).toEqual({ status: 200, json: { result: "deny" } });
      }
    });
  });
});
