/**
 * The operator dashboard in a real browser: Debian's Chromium driven by playwright-core, against the real control
 * plane (Bun, HTTPS, PGlite) and compiled agents on simulated boards over real MQTT. One browser for the file; each
 * role gets its own browser context (its own cookie jar). Screenshots go to .tmp/screenshots (git-ignored).
 *
 * Rules: HW-UI-1 (session cookie), HW-UI-2 (CSRF + Origin), HW-UI-3 (CSP), HW-UI-4 (the API's roles).
 */
import { appendFileSync, existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ApiClient } from "../support/api.js";
import { GuardedFleet, type GuardedBoard } from "../support/guarded-board.js";
import { REPO_ROOT, requireAgentBinary, startControlPlane, type ControlPlane } from "../support/processes.js";
import { describeUnless } from "../support/skip.js";
import { waitFor } from "../support/wait.js";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const SCREENSHOTS = join(REPO_ROOT, ".tmp/screenshots");

let plane: ControlPlane;
let admin: ApiClient;
let fleet: GuardedFleet;
let browser: Browser;
const tokens: Record<"operator" | "viewer", { id: string; token: string }> = {} as never;
const miners: Record<"steady" | "contained" | "tampered", GuardedBoard> = {} as never;
const contexts: BrowserContext[] = [];

const device = (id: string) => admin.get(`/api/v1/devices/${id}`);

/** A fresh browser context (own cookies) signed in through the login form with `token`. */
async function signIn(token: string): Promise<Page> {
  // The plane's own CA is not in Chromium's store; the test trusts it the way an operator would after importing
  // data/ca.pem. Cookies and origins are still https://127.0.0.1:PORT.
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  contexts.push(context);
  const page = await context.newPage();
  page.on("dialog", (dialog) => void dialog.accept());
  await page.goto(`${plane.httpUrl}/`);
  expect(new URL(page.url()).pathname).toBe("/ui/login");
  await page.fill('input[name="token"]', token);
  await Promise.all([page.waitForURL(`${plane.httpUrl}/ui/`), page.click('button[type="submit"]')]);
  return page;
}

const cell = (page: Page, deviceId: string, field: string) => page.locator(`tr[data-device="${deviceId}"] [data-field="${field}"]`).first();
const shot = (page: Page, name: string) => page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });

const missing = existsSync(CHROMIUM) ? null : `${CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)`;

describeUnless(missing, "dashboard in a real browser (Chromium, real plane, compiled agents)", () => {
  beforeAll(async () => {
    requireAgentBinary();
    mkdirSync(SCREENSHOTS, { recursive: true });
    plane = await startControlPlane({ env: { HASHWARD_TELEMETRY_SAMPLE_MS: "500" } });
    admin = new ApiClient(plane.httpUrl, plane.adminToken);
    for (const role of ["operator", "viewer"] as const) tokens[role] = await admin.post("/api/v1/api-tokens", { role, label: `e2e ${role}` });
    await admin.ok("PUT", "/api/v1/policies/pools", { allowedUrls: ["stratum+tcp://pool.example.net:3333"], workerPatterns: ["^farm\\.worker\\d+$"] });
    // Guarded boards: a simulated cgminer each, so heartbeats carry telemetry; /config measured, so a changed miner
    // config is a difference. Reference values are measured on the first board, as an operator registers them.
    fleet = new GuardedFleet(plane, admin);
    const board = { agentConfig: { measure: { paths: ["/firmware", "/config", "/dev/mtd2"] } } };
    miners.steady = await fleet.start("steady", board);
    miners.contained = await fleet.start("contained", board);
    miners.tampered = await fleet.start("tampered", board);
    await admin.post(`/api/v1/devices/${miners.contained.id}/quarantine`, { reason: "e2e: held for inspection" });
    await waitFor("contained quarantined", async () => (await device(miners.contained.id)).containment === "quarantined", { timeoutMs: 30_000 });

    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  }, 240_000);

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await fleet?.close();
    await plane?.proc.kill("SIGKILL");
  });

  it("signs in with an API token and shows the fleet: a trusted device and a quarantined one (HW-UI-1, HW-UI-3)", async () => {
    const page = await signIn(plane.adminToken);
    await expect.poll(() => cell(page, miners.steady.id, "appraisal").textContent()).toBe("trusted");
    expect(await cell(page, miners.steady.id, "containment").textContent()).toBe("none");
    expect(await cell(page, miners.contained.id, "containment").textContent()).toBe("quarantined");
    expect(await page.locator('[data-counts="containment"] [data-count="quarantined"]').textContent()).toBe("1");
    // The counts agree with the table (the contained board's stopped miner may leave it at warning: not observed).
    const trustedRows = await page.locator('#devices [data-field="appraisal"]', { hasText: /^trusted$/ }).count();
    expect(trustedRows).toBeGreaterThanOrEqual(2);
    expect(await page.locator('[data-counts="appraisal"] [data-count="trusted"]').textContent()).toBe(String(trustedRows));

    // HW-UI-1: the session cookie is HttpOnly, Secure (HTTPS, __Host- prefix) and SameSite=Strict; no token in it.
    const cookies = await page.context().cookies();
    expect(cookies).toHaveLength(1);
    expect(cookies[0]).toMatchObject({ name: "__Host-hashward_session", httpOnly: true, secure: true, sameSite: "Strict", path: "/" });
    expect(cookies[0]!.value).not.toContain(plane.adminToken);
    expect(await page.evaluate("document.cookie")).toBe("");

    // HW-UI-3: the page carries the strict policy; the only script is the plane's own file.
    const response = await page.goto(`${plane.httpUrl}/ui/?search=${miners.contained.id.slice(0, 10)}`);
    const csp = response!.headers()["content-security-policy"] ?? "";
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(await page.locator("script:not([src])").count()).toBe(0);
    // Server-side search: the contained device only.
    expect(await page.locator("#devices tbody tr").count()).toBe(1);
    await shot(page, "fleet-search");
  });

  it("shows a device turning contraindicated live, without a reload", async () => {
    const page = await signIn(plane.adminToken);
    let navigations = 0;
    page.on("framenavigated", (frame) => {
      if (frame === page.mainFrame()) navigations += 1;
    });
    const id = miners.tampered.id;
    expect(await cell(page, id, "appraisal").textContent()).toBe("trusted");
    await shot(page, "fleet-before");

    appendFileSync(join(miners.tampered.root, "config/cgminer.conf"), '\n{"url":"stratum+tcp://evil.example:3333"}\n');
    await expect.poll(() => cell(page, id, "appraisal").textContent(), { timeout: 60_000, interval: 100 }).toBe("contraindicated");
    // Auto-quarantine follows the verdict; the agent's signed ack moves the row again, still without a reload.
    await expect.poll(() => cell(page, id, "containment").textContent(), { timeout: 60_000, interval: 100 }).toBe("quarantined");
    expect(navigations).toBe(0);
    expect(await page.locator("#live-log li").first().textContent()).toContain(id);
    expect(await page.locator('[data-counts="appraisal"] [data-count="contraindicated"]').textContent()).toBe("1");
    await shot(page, "fleet-live-contraindicated");

    // The device page: the claim vector names the changed file with both digests.
    await page.goto(`${plane.httpUrl}/ui/devices/${id}`);
    const difference = page.locator("#differences tbody tr", { hasText: "/config/cgminer.conf" });
    expect(await difference.count()).toBe(1);
    expect(await difference.textContent()).toMatch(/changed.*sha256 [0-9a-f]{64}.*sha256 [0-9a-f]{64}/);
    expect(await page.locator("#history tbody tr", { hasText: "contraindicated" }).count()).toBeGreaterThan(0);
    expect(await page.locator("#commands tbody tr", { hasText: "quarantine" }).count()).toBeGreaterThan(0);
    await shot(page, "device-contraindicated");
  });

  it("quarantines from the device page as an operator: reason, confirmation, the agent's ack", async () => {
    const page = await signIn(tokens.operator.token);
    const id = miners.steady.id;
    await page.goto(`${plane.httpUrl}/ui/devices/${id}`);
    // Telemetry over time is drawn (samples every 500 ms in this plane).
    await expect.poll(async () => {
      await page.reload();
      return page.locator("figure.chart polyline").count();
    }, { timeout: 30_000 }).toBeGreaterThan(0);
    // An operator sees the operator's actions for this state, not the admin's revoke (the API's roles).
    expect(await page.locator("#actions button").allTextContents()).toEqual(["Reject", "Attest now", "Quarantine"]);

    const form = page.locator('form[action$="/quarantine"]');
    await form.locator('input[name="reason"]').fill("e2e: suspicious hashrate");
    await Promise.all([page.waitForURL(/notice=/), form.locator("button").click()]);
    expect(await page.locator(".notice").textContent()).toContain("Quarantine: done");
    await waitFor("steady quarantined (acked)", async () => (await device(id)).containment === "quarantined", { timeoutMs: 30_000 });
    const { commands } = await admin.get(`/api/v1/devices/${id}/commands`);
    expect(commands[0]).toMatchObject({ action: "quarantine", status: "acked" });
    const { transitions } = await admin.get(`/api/v1/devices/${id}/history`);
    expect(transitions.find((t: any) => t.to === "quarantine_requested")).toMatchObject({ reason: "e2e: suspicious hashrate", actor: { id: tokens.operator.id } });
    const { entries } = await admin.get("/api/v1/audit?limit=20");
    expect(entries.find((e: any) => e.target === id && e.actor.id === tokens.operator.id)).toBeDefined();
    await page.reload();
    expect(await page.locator('[data-field="containment"]').first().textContent()).toBe("quarantined");
    expect(await page.locator("#history tbody tr", { hasText: "e2e: suspicious hashrate" }).count()).toBe(1);
    await shot(page, "device-quarantined-by-operator");
  });

  it("as a viewer the actions are absent and a forged POST is refused (HW-UI-4)", async () => {
    const page = await signIn(tokens.viewer.token);
    const id = miners.tampered.id;
    const before = await device(id);
    await page.goto(`${plane.httpUrl}/ui/devices/${id}`);
    expect(await page.locator("#actions").count()).toBe(0);
    expect(await page.locator("#no-actions").count()).toBe(1);
    expect(await page.locator('form[action*="/release"], form[action*="/quarantine"]').count()).toBe(0);
    await shot(page, "device-as-viewer");

    // The viewer's own session and CSRF token, a same-origin POST: only the role can refuse it.
    const csrf = await page.locator('input[name="_csrf"]').first().inputValue();
    const forged = await page.request.post(`${plane.httpUrl}/ui/devices/${id}/release`, {
      form: { _csrf: csrf, confirmed: "yes", reason: "forged by a viewer" },
      headers: { origin: plane.httpUrl },
      maxRedirects: 0,
    });
    expect(forged.status()).toBe(403);
    expect(await forged.text()).toContain("role viewer may not do this; needs operator");
    const after = await device(id);
    expect(after.containment).toBe(before.containment);
    const { commands } = await admin.get(`/api/v1/devices/${id}/commands`);
    expect(commands.some((c: any) => c.reason === "forged by a viewer")).toBe(false);
    // Same for an admin-only page.
    expect((await page.request.get(`${plane.httpUrl}/ui/tokens`)).status()).toBe(403);
  });

  it("refuses a state change without the CSRF token or from another origin (HW-UI-2)", async () => {
    const page = await signIn(tokens.operator.token);
    const id = miners.contained.id;
    await page.goto(`${plane.httpUrl}/ui/devices/${id}`);
    const csrf = await page.locator('input[name="_csrf"]').first().inputValue();
    const post = (form: Record<string, string>, origin: string) =>
      page.request.post(`${plane.httpUrl}/ui/devices/${id}/release`, { form, headers: { origin }, maxRedirects: 0 });

    const noToken = await post({ confirmed: "yes", reason: "no csrf" }, plane.httpUrl);
    expect(noToken.status()).toBe(403);
    expect(await noToken.text()).toContain("CSRF");
    const wrongToken = await post({ _csrf: `${csrf.slice(0, -2)}xx`, confirmed: "yes", reason: "wrong csrf" }, plane.httpUrl);
    expect(wrongToken.status()).toBe(403);
    const otherOrigin = await post({ _csrf: csrf, confirmed: "yes", reason: "cross origin" }, "https://evil.example");
    expect(otherOrigin.status()).toBe(403);
    expect(await otherOrigin.text()).toContain("cross-origin");
    const unconfirmed = await post({ _csrf: csrf, reason: "not confirmed" }, plane.httpUrl);
    expect(unconfirmed.status()).toBe(400);

    expect((await device(id)).containment).toBe("quarantined");
    const { commands } = await admin.get(`/api/v1/devices/${id}/commands`);
    expect(commands.filter((c: any) => c.action === "release")).toEqual([]);
  });

  it("edits a policy with the API's validation messages, approves captured reference values, creates a token", async () => {
    const page = await signIn(plane.adminToken);
    await page.goto(`${plane.httpUrl}/ui/policies`);
    const pools = page.locator('form[action="/ui/policies/pools"]');
    await pools.locator("textarea").fill(JSON.stringify({ allowedUrls: ["http://pool.example.net:3333"], workerPatterns: ["^farm\\.worker\\d+$"] }));
    await Promise.all([page.waitForLoadState("load"), pools.locator("button").click()]);
    expect(await page.locator(".error").textContent()).toMatch(/^body: allowedUrls\.0: /);
    // The refused draft stays in the editor; nothing was stored.
    expect(await pools.locator("textarea").inputValue()).toContain("http://pool.example.net:3333");
    const { policies } = await admin.get("/api/v1/policies/pools");
    expect(policies[0].allowedUrls).toEqual(["stratum+tcp://pool.example.net:3333"]);

    await pools.locator("textarea").fill(JSON.stringify({ allowedUrls: ["stratum+tcp://pool.example.net:3333", "stratum+tcp://backup.example.net:3333"], workerPatterns: ["^farm\\.worker\\d+$"] }));
    await Promise.all([page.waitForURL(/notice=/), pools.locator("button").click()]);
    expect(await page.locator(".notice").textContent()).toMatch(/stored pools policy version \d+/);
    expect((await admin.get("/api/v1/policies/pools")).policies[0].allowedUrls).toContain("stratum+tcp://backup.example.net:3333");

    // A captured set is proposed; the admin approves it from the page.
    const proposed = await admin.post("/api/v1/reference-values/capture", { deviceId: miners.steady.id });
    await page.goto(`${plane.httpUrl}/ui/reference-values`);
    await Promise.all([page.waitForURL(/notice=/), page.locator(`form[action="/ui/reference-values/${proposed.id}/approve"] button`).click()]);
    expect((await admin.get("/api/v1/reference-values")).referenceValues.find((r: any) => r.id === proposed.id).status).toBe("approved");

    await page.goto(`${plane.httpUrl}/ui/tokens`);
    await page.fill('input[name="label"]', "made in the dashboard");
    await page.selectOption('select[name="role"]', "viewer");
    await Promise.all([page.waitForLoadState("load"), page.locator('form[action="/ui/tokens"] button').click()]);
    const secret = (await page.locator("#created-token .mono").textContent()) ?? "";
    expect(secret).toMatch(/^hwa_/);
    expect((await new ApiClient(plane.httpUrl, secret).request("GET", "/api/v1/devices?limit=1")).status).toBe(200);
    await shot(page, "tokens-created");
  });

  it("revoking the API token ends its dashboard sessions at the next request (HW-UI-1)", async () => {
    const { token, id } = await admin.post("/api/v1/api-tokens", { role: "viewer", label: "e2e short-lived" });
    const page = await signIn(token);
    expect(await page.locator("#devices").count()).toBe(1);
    await admin.post(`/api/v1/api-tokens/${id}/revoke`, { reason: "e2e" });
    await page.goto(`${plane.httpUrl}/ui/`);
    expect(new URL(page.url()).pathname).toBe("/ui/login");
  });
});
