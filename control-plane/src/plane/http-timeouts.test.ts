/**
 * The plane's HTTP listener as `npm start` runs it (Bun, real process, real sockets): a body that never arrives is
 * cut (HW-HTTP-3), and idle keep-alive connections are closed by the configured timeout without failing the
 * next request (HW-HTTP-4).
 */
import type { Socket } from "node:net";
import { connect } from "node:tls";
import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../../../test/support/api.js";
import { startControlPlane, type ControlPlane } from "../../../test/support/processes.js";
import { waitFor } from "../../../test/support/wait.js";

const BODY_TIMEOUT_MS = 1_000;
const KEEP_ALIVE_TIMEOUT_MS = 1_000;

let plane: ControlPlane;

beforeAll(async () => {
  plane = await startControlPlane({
    env: { HASHWARD_HTTP_BODY_TIMEOUT_MS: String(BODY_TIMEOUT_MS), HASHWARD_HTTP_KEEP_ALIVE_TIMEOUT_MS: String(KEEP_ALIVE_TIMEOUT_MS) },
  });
}, 90_000);

afterAll(async () => {
  await plane?.proc.kill("SIGTERM");
  if (plane) rmSync(plane.dataDir, { recursive: true, force: true });
});

interface RawConnection {
  socket: Socket;
  received(): string;
  closed: Promise<void>;
}

function open(request: string): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    let text = "";
    // The plane serves HTTPS by default (HW-TLS-1): the raw requests go over TLS, trusting its CA.
    const socket = connect({ port: plane.httpPort, host: "127.0.0.1", ca: plane.caPem ?? undefined }, () => {
      socket.write(request);
      resolve({ socket, received: () => text, closed });
    });
    const closed = new Promise<void>((done) => socket.once("close", () => done()));
    socket.on("data", (chunk: Buffer) => void (text += chunk.toString("latin1")));
    socket.once("error", reject);
  });
}

describe("request body timeout (HW-HTTP-3)", () => {
  // The announced 1 MB adds about 1 s (MIN_BODY_BYTES_PER_SEC) to the 1 s body timeout.
  const stalled = (method: string, path: string, headers = "") =>
    `${method} ${path} HTTP/1.1\r\nHost: plane\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n${headers}\r\n{`;

  it("answers 408 and closes an unauthenticated enroll whose 1 MB body never arrives", async () => {
    const connection = await open(stalled("POST", "/api/v1/enroll"));
    await waitFor("the plane to close the stalled connection", async () => {
      await connection.closed;
      return true;
    }, { timeoutMs: 30_000 });
    expect(connection.received()).toMatch(/^HTTP\/1\.1 408 /);
    expect(connection.received()).toContain("request_timeout");
  }, 40_000);

  it.each([
    ["an operator route without a token", "POST", "/api/v1/devices/preauthorize", ""],
    ["an operator route with a token", "POST", "/api/v1/enrollment-tokens", "authorization: Bearer TOKEN\r\n"],
    ["the streamed release image upload", "PUT", `/api/v1/tuf/images/${"a".repeat(64)}`, "authorization: Bearer TOKEN\r\n"],
    ["an unknown route", "POST", "/nowhere", ""],
  ])("closes the connection on %s too", async (_name, method, path, headers) => {
    const connection = await open(stalled(method, path, headers.replace("TOKEN", plane.adminToken)));
    await waitFor("the plane to close the stalled connection", async () => {
      await connection.closed;
      return true;
    }, { timeoutMs: 30_000 });
    expect(connection.received()).toMatch(/^HTTP\/1\.1 (408|401|404|413) /);
  }, 40_000);

  it("serves a body that arrives in time", async () => {
    const admin = new ApiClient(plane.httpUrl, plane.adminToken);
    const created = await admin.post<{ token: string }>("/api/v1/enrollment-tokens", { ttlMs: 60_000, maxUses: 1 });
    expect(created.token).toMatch(/^hwe_/);
  });
});

describe("keep-alive (HW-HTTP-4)", () => {
  it("announces the configured keep-alive timeout and closes an idle connection after it", async () => {
    const connection = await open("GET /healthz HTTP/1.1\r\nHost: plane\r\n\r\n");
    await waitFor("the plane to close the idle keep-alive connection", async () => {
      await connection.closed;
      return true;
    }, { timeoutMs: 30_000 });
    expect(connection.received()).toMatch(/^HTTP\/1\.1 200 /);
    expect(connection.received().toLowerCase()).toContain(`keep-alive: timeout=${KEEP_ALIVE_TIMEOUT_MS / 1000}`);
  }, 40_000);

  it("a client idle past the server's keep-alive timeout makes its next request without error", async () => {
    const admin = new ApiClient(plane.httpUrl, plane.adminToken);
    await admin.get("/api/v1/devices");
    // Idle until the plane has closed the connection of a parallel idle probe: it closed ours too by then.
    const probe = await open("GET /healthz HTTP/1.1\r\nHost: plane\r\n\r\n");
    await waitFor("the plane to close an idle connection", async () => {
      await probe.closed;
      return true;
    }, { timeoutMs: 30_000 });
    for (let i = 0; i < 3; i++) expect(await admin.get("/api/v1/devices")).toHaveProperty("devices");
  }, 40_000);
});
