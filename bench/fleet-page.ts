/**
 * The dashboard's fleet page at 10,000 devices: server time and bytes of `GET /ui/` (counts by state + the first
 * page of 50 devices), of a filtered page (`?appraisal=contraindicated`), a search (`?search=<id prefix>`) and the
 * last page (`?offset=9950`), each signed in with a dashboard session.
 * Baseline (same run, same plane): the JSON API listing the same page, `GET /api/v1/devices?limit=50[&...]`.
 *
 * Devices are seeded directly in the plane's database (PGlite: the plane is stopped, seeded, started again;
 * BENCH_DATABASE_URL: seeded while it runs), with telemetry and an attestation result each, as a busy fleet has.
 * Server time = the plane's own `hashward_http_request_duration_seconds` (sum/count per route, so neither TLS
 * handshakes nor the client count); wall = client round trip, median, a fresh HTTPS connection per request.
 * Usage: npx tsx bench/fleet-page.ts
 */
import { randomBytes } from "node:crypto";
import type { devices as devicesTable } from "../control-plane/src/db/index.js";
import { planeFetch } from "../test/support/api.js";
import { readMetric, startBenchPlane } from "./support/plane.js";
import { emitResult, envInt, median, printTable, progress, ratio, round } from "./support/report.js";

const DEVICES = envInt("BENCH_DEVICES", 10_000, { max: 200_000 });
const RUNS = envInt("BENCH_RUNS", 30, { max: 1_000 });
const HISTOGRAM = "hashward_http_request_duration_seconds";

function seedRow(i: number, now: number): typeof devicesTable.$inferInsert {
  const bad = i % 200 === 0; // 0.5 % contraindicated and quarantined
  const warn = !bad && i % 200 === 1;
  const appraisal = bad ? "contraindicated" : warn ? "warning" : "trusted";
  return {
    id: `hw-${randomBytes(12).toString("hex")}`,
    publicKey: randomBytes(32).toString("base64url"),
    model: i % 3 === 0 ? "S19" : i % 3 === 1 ? "S19j Pro" : "S21",
    firmwareVersion: "2024.06.1",
    agentVersion: "0.1.0",
    enrollment: "accepted",
    appraisal,
    containment: bad ? "quarantined" : "none",
    connected: true,
    lastSeenAt: new Date(now - (i % 60) * 1000),
    lastEvidenceSeq: 10,
    lastAppraisal: {
      status: bad ? "contraindicated" : warn ? "warning" : "affirming",
      trustworthiness: { "instance-identity": "affirming", configuration: bad ? "contraindicated" : "affirming", executables: "affirming", "file-system": "none" },
      differences: bad ? [{ path: "/config/cgminer.conf", claim: "configuration", kind: "changed", expected: { sha256: "a".repeat(64), size: 512 }, seen: { sha256: "b".repeat(64), size: 560 } }] : [],
      findings: [],
      referenceId: "rv_bench",
      evidenceSeq: 10,
      appraisedAt: new Date(now).toISOString(),
      summary: bad ? "1 difference" : "matches reference values rv_bench",
    },
    telemetry: { hashrateGhs: 95_000 + (i % 1000), hashrateAvgGhs: 95_500, accepted: 1000 + i, rejected: 3, temperaturesC: [62, 64, 63, 70, 71, 69], fanRpm: [5400, 5460, 5380, 5420], activePool: `stratum+tcp://pool${i % 4}.example.net:3333` },
    createdAt: new Date(now - (DEVICES - i) * 1000),
    updatedAt: new Date(now),
  };
}

const bench = await startBenchPlane();
try {
  progress(`seeding ${DEVICES} devices`);
  const now = Date.now();
  const rows = Array.from({ length: DEVICES }, (_, i) => seedRow(i, now));
  const ids = rows.map((row) => row.id);
  await bench.seed(rows);
  const { plane, admin } = bench;

  // A dashboard session, signed in as a browser does.
  const login = await planeFetch(`${plane.httpUrl}/ui/login`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", origin: plane.httpUrl },
    body: new URLSearchParams({ token: plane.adminToken }).toString(),
    redirect: "manual",
  });
  const cookie = /(__Host-hashward_session=[^;]+)/.exec(login.headers.get("set-cookie") ?? "")?.[1];
  if (login.status !== 303 || !cookie) throw new Error(`dashboard sign-in failed: ${login.status}`);

  const searchFor = ids[DEVICES - 1]!.slice(0, 12);
  const cases = [
    { name: "first page", ui: "/ui/", api: "/api/v1/devices?limit=50" },
    { name: "contraindicated", ui: "/ui/?appraisal=contraindicated", api: "/api/v1/devices?limit=50&appraisal=contraindicated" },
    { name: "search", ui: `/ui/?search=${searchFor}`, api: `/api/v1/devices?limit=50&search=${searchFor}` },
    { name: "last page", ui: `/ui/?offset=${DEVICES - 50}`, api: `/api/v1/devices?limit=50&offset=${DEVICES - 50}` },
  ];

  /** Runs `path` RUNS times: median wall ms, bytes of the last answer, and the plane's own mean time for `route`. */
  async function measure(path: string, headers: Record<string, string>, route: string) {
    const labels = { method: "GET", route, status: "200" };
    const sumBefore = await readMetric(admin, `${HISTOGRAM}_sum`, labels);
    const countBefore = await readMetric(admin, `${HISTOGRAM}_count`, labels);
    const walls: number[] = [];
    let bytes = 0;
    let body = "";
    for (let run = 0; run < RUNS; run++) {
      const started = performance.now();
      const response = await planeFetch(`${plane.httpUrl}${path}`, { headers });
      body = await response.text();
      walls.push(performance.now() - started);
      if (response.status !== 200) throw new Error(`GET ${path} -> ${response.status}: ${body.slice(0, 200)}`);
      bytes = Buffer.byteLength(body);
    }
    const count = (await readMetric(admin, `${HISTOGRAM}_count`, labels)) - countBefore;
    const serverMs = ((await readMetric(admin, `${HISTOGRAM}_sum`, labels)) - sumBefore) / Math.max(1, count) * 1000;
    return { wallMs: round(median(walls), 1), serverMs: round(serverMs, 1), bytes, body };
  }

  const results: Record<string, { ui: Awaited<ReturnType<typeof measure>>; api: Awaited<ReturnType<typeof measure>> }> = {};
  for (const c of cases) {
    progress(`${c.name}: ${RUNS} runs each`);
    const ui = await measure(c.ui, { cookie }, "/ui/");
    const api = await measure(c.api, { authorization: `Bearer ${plane.adminToken}` }, "/api/v1/devices");
    // Same rows: every device id of the API's page is on the dashboard's page.
    const listed = (JSON.parse(api.body) as { devices: { deviceId: string }[] }).devices;
    if (listed.length === 0 || listed.some((d) => !ui.body.includes(d.deviceId))) throw new Error(`${c.name}: the dashboard page does not show the API's rows`);
    results[c.name] = { ui, api };
  }

  printTable(`fleet page at ${DEVICES} devices (server = plane's histogram mean; wall = median of ${RUNS}, new TLS connection each)`, [
    ...cases.flatMap((c): [string, string, string][] => {
      const r = results[c.name]!;
      return [
        [`dashboard ${c.name}`, `${r.ui.serverMs} ms server, ${r.ui.wallMs} ms wall, ${r.ui.bytes} B`, `/API ${ratio(r.ui.serverMs, r.api.serverMs)}`],
        [`API ${c.name}`, `${r.api.serverMs} ms server, ${r.api.wallMs} ms wall, ${r.api.bytes} B`, "baseline"],
      ];
    }),
  ]);
  const first = results["first page"]!;
  emitResult("fleet-page", {
    devices: DEVICES,
    runs: RUNS,
    fleetPageServerMs: first.ui.serverMs,
    fleetPageWallMs: first.ui.wallMs,
    fleetPageBytes: first.ui.bytes,
    apiPageServerMs: first.api.serverMs,
    apiPageBytes: first.api.bytes,
    ratioServerPageToApi: ratio(first.ui.serverMs, first.api.serverMs),
    ratioBytesPageToApi: ratio(first.ui.bytes, first.api.bytes),
    cases: Object.fromEntries(cases.map((c) => [c.name, { ui: { serverMs: results[c.name]!.ui.serverMs, wallMs: results[c.name]!.ui.wallMs, bytes: results[c.name]!.ui.bytes }, api: { serverMs: results[c.name]!.api.serverMs, wallMs: results[c.name]!.api.wallMs, bytes: results[c.name]!.api.bytes } }])),
  });
} finally {
  await bench.close();
}
