/** @jsxImportSource hono/jsx */
/**
 * The operator dashboard, served by the plane itself at `/ui/` (`/` redirects there): server-rendered HTML
 * (hono/jsx), one stylesheet and one small script from this folder, nothing fetched from other hosts.
 *
 * Security (docs/rules.md):
 * - HW-UI-1 sign-in with an API token opens a server-side session (./sessions.ts); the cookie is HttpOnly,
 *   SameSite=Strict, and Secure with the `__Host-` prefix over HTTPS; sessions end with their token.
 * - HW-UI-2 every state change (POST) needs the session's CSRF token (form field `_csrf` or header
 *   `x-csrf-token`) and an `Origin` equal to the plane's own; sign-in needs the Origin too.
 * - HW-UI-3 a strict Content-Security-Policy on every dashboard answer: default-src 'self', no inline script or
 *   style, no eval, no framing.
 * - HW-UI-4 roles are the API's: each page and action names the API route it stands for, its least role is read
 *   from that route's own definition (the `x-hashward-role` the API enforces), and the action calls the same
 *   service function as that route. A dashboard route whose API twin is missing fails at start.
 */
import { readFileSync } from "node:fs";
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { secureHeaders } from "hono/secure-headers";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { Logger } from "pino";
import { z } from "zod";
import type { Database } from "../db/index.js";
import type { EventHub } from "../events/index.js";
import { roleAllows } from "../http/auth.js";
import { httpErrorFor, validationFailure } from "../http/errors.js";
import { ROLE_EXTENSION } from "../http/openapi.js";
import { eventStreamResponse } from "../http/routes/events.js";
import { apiTokenBody, deviceListQuery, deviceParams, pageQuery, reasonBody } from "../http/schemas.js";
import type { HttpEnv } from "../http/env.js";
import { POLICY_KINDS, policyInputSchemas, type PolicyKind } from "../policy/schemas.js";
import type { PolicyService } from "../policy/types.js";
import type { RolloutService } from "../rollouts/types.js";
import type { Actor, ControlPlaneService, DeviceView, Role } from "../service/index.js";
import { Layout, type PageFrame } from "./layout.js";
import { AuditPage, DevicePage, FleetPage, LoginPage, PendingPage, PoliciesPage, ReferenceValuesPage, RolloutsPage, TokensPage, type DeviceAction, type FleetQuery } from "./pages.js";
import { fleetCounts, lastEventId, telemetryHistory } from "./queries.js";
import { createSessionStore, sameToken, type UiSession } from "./sessions.js";

export { createSessionStore } from "./sessions.js";
export { pruneDashboardData } from "./queries.js";

export interface DashboardDeps {
  db: Database;
  logger: Logger;
  /** Served over HTTPS: the cookie is `__Host-hashward_session` and Secure, and the expected Origin is https. */
  secure: boolean;
  hub?: EventHub | undefined;
  policies?: PolicyService | undefined;
  rollouts?: RolloutService | undefined;
  listTargets?: (() => Promise<{ name: string; custom?: unknown }[]>) | undefined;
  /** Session lifetime, ms (HW-UI-1). Default 12 h. */
  sessionTtlMs?: number | undefined;
  now?: () => number;
}

type UiEnv = HttpEnv & { Variables: HttpEnv["Variables"] & { session: UiSession } };
type UiContext = Context<UiEnv>;

/** Fleet page size. */
export const FLEET_PAGE_SIZE = 50;
const TELEMETRY_WINDOW_MS = 24 * 3600_000;

const ASSETS: Record<string, { type: string; body: string }> = {
  "app.js": { type: "text/javascript; charset=utf-8", body: readFileSync(new URL("./assets/app.js", import.meta.url), "utf8") },
  "app.css": { type: "text/css; charset=utf-8", body: readFileSync(new URL("./assets/app.css", import.meta.url), "utf8") },
};

/** HW-UI-3: the policy every dashboard answer carries. */
const dashboardHeaders = secureHeaders({
  contentSecurityPolicy: {
    defaultSrc: ["'self'"],
    scriptSrc: ["'self'"],
    styleSrc: ["'self'"],
    imgSrc: ["'self'"],
    connectSrc: ["'self'"],
    fontSrc: ["'self'"],
    objectSrc: ["'none'"],
    baseUri: ["'none'"],
    formAction: ["'self'"],
    frameAncestors: ["'none'"],
  },
  referrerPolicy: "same-origin",
  xFrameOptions: "DENY",
  crossOriginResourcePolicy: "same-origin",
  crossOriginOpenerPolicy: "same-origin",
});

/**
 * The least role of the API route `method path` as the API enforces it (its `x-hashward-role`, HW-UI-4).
 * Throws when no such API route is registered: every dashboard action must have an API twin.
 */
export function apiRoleOf(app: OpenAPIHono<HttpEnv>, method: string, path: string): Role {
  for (const definition of app.openAPIRegistry.definitions) {
    if (definition.type !== "route") continue;
    const route = definition.route as unknown as Record<string, unknown>;
    if (route.method === method && route.path === path) {
      const role = route[ROLE_EXTENSION];
      if (role === "viewer" || role === "operator" || role === "admin") return role;
    }
  }
  throw new Error(`dashboard: no API route ${method.toUpperCase()} ${path} with a role; every dashboard action needs its API twin (HW-UI-4)`);
}

class UiRefusal extends Error {
  constructor(
    readonly status: 400 | 401 | 403,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Registers the dashboard on `app`. Call after every API route is registered: roles are read from them.
 */
export function registerDashboard(app: OpenAPIHono<HttpEnv>, service: ControlPlaneService, deps: DashboardDeps): void {
  const { db, logger } = deps;
  const sessions = createSessionStore({ db, service, ...(deps.now ? { now: deps.now } : {}), ...(deps.sessionTtlMs ? { ttlMs: deps.sessionTtlMs } : {}) });
  const cookieName = deps.secure ? "__Host-hashward_session" : "hashward_session";
  const role = (method: string, path: string) => apiRoleOf(app, method, path);
  const ui = app as unknown as OpenAPIHono<UiEnv>;

  // The roles, read once from the API's own routes (HW-UI-4).
  const roles = {
    listDevices: role("get", "/api/v1/devices"),
    getDevice: role("get", "/api/v1/devices/{deviceId}"),
    history: role("get", "/api/v1/devices/{deviceId}/history"),
    commands: role("get", "/api/v1/devices/{deviceId}/commands"),
    references: role("get", "/api/v1/reference-values"),
    approveReference: role("post", "/api/v1/reference-values/{id}/approve"),
    audit: role("get", "/api/v1/audit"),
    listTokens: role("get", "/api/v1/api-tokens"),
    createToken: role("post", "/api/v1/api-tokens"),
    revokeToken: role("post", "/api/v1/api-tokens/{id}/revoke"),
    stream: deps.hub ? role("get", "/api/v1/events/stream") : null,
    listPolicies: deps.policies ? role("get", "/api/v1/policies/pools") : null,
    putPolicy: deps.policies ? Object.fromEntries(POLICY_KINDS.map((k) => [k, role("put", `/api/v1/policies/${k}`)])) as Record<PolicyKind, Role> : null,
    listRollouts: deps.rollouts ? role("get", "/api/v1/rollouts") : null,
    controlRollout: deps.rollouts ? { pause: role("post", "/api/v1/rollouts/{id}/pause"), resume: role("post", "/api/v1/rollouts/{id}/resume"), cancel: role("post", "/api/v1/rollouts/{id}/cancel") } : null,
  };

  // Device actions: each the API route it stands for and the same service call (HW-UI-4). `offered` only decides
  // which buttons a device's page shows; the service decides what a state allows (409 otherwise).
  type Offer = (d: DeviceView) => boolean;
  const deviceActions: (DeviceAction & { role: Role; offered: Offer; run: (actor: Actor, deviceId: string, reason: string) => Promise<unknown> })[] = [
    { name: "accept", label: "Accept", reason: true, offered: (d) => d.enrollment === "pending" || d.enrollment === "rejected", role: role("post", "/api/v1/devices/{deviceId}/accept"), run: (a, id, r) => service.acceptDevice(a, id, r) },
    { name: "reject", label: "Reject", reason: true, danger: true, offered: (d) => d.enrollment === "pending" || d.enrollment === "accepted", role: role("post", "/api/v1/devices/{deviceId}/reject"), run: (a, id, r) => service.rejectDevice(a, id, r) },
    { name: "revoke", label: "Revoke", reason: true, danger: true, offered: (d) => d.enrollment !== "revoked", role: role("post", "/api/v1/devices/{deviceId}/revoke"), run: (a, id, r) => service.revokeDevice(a, id, r) },
    // The API's attest takes no reason (POST /devices/{id}/attest has no body): it asks for a confirmation only.
    { name: "attest", label: "Attest now", reason: false, offered: (d) => d.enrollment === "accepted", role: role("post", "/api/v1/devices/{deviceId}/attest"), run: (a, id) => service.attestNow(a, id) },
    { name: "quarantine", label: "Quarantine", reason: true, danger: true, offered: (d) => d.containment === "none" || d.containment === "release_requested", role: role("post", "/api/v1/devices/{deviceId}/quarantine"), run: (a, id, r) => service.quarantine(a, [id], r) },
    { name: "release", label: "Release", reason: true, offered: (d) => d.containment === "quarantined" || d.containment === "quarantine_requested", role: role("post", "/api/v1/devices/{deviceId}/release"), run: (a, id, r) => service.release(a, [id], r) },
  ];

  const expectedOrigin = (c: Context) => `${deps.secure ? "https" : "http"}://${c.req.header("host") ?? ""}`;
  // The same actor the API's requireRole sets, so audit rows read the same from either door.
  const actorOf = (session: UiSession): Actor => ({ kind: "operator", id: session.principal.id, role: session.principal.role });
  const frameOf = (c: UiContext, title: string, current?: string): PageFrame => {
    const session = c.get("session");
    const notice = c.req.query("notice");
    return { title, ...(current ? { current } : {}), principal: session.principal, csrf: session.csrfToken, notice: notice ? notice.slice(0, 300) : undefined };
  };
  const html = async (c: Context, frame: PageFrame, body: unknown, status: ContentfulStatusCode = 200) => {
    const page = await (<Layout {...frame}>{body as never}</Layout>);
    return c.html(`<!DOCTYPE html>${String(page)}`, status);
  };
  const errorPage = (c: UiContext, status: ContentfulStatusCode, message: string) => {
    const session = c.get("session") as UiSession | undefined;
    return html(c, { title: "Refused", principal: session?.principal ?? null, ...(session ? { csrf: session.csrfToken } : {}), error: message }, <p><a href="/ui/">back to the fleet</a></p>, status);
  };

  /** Resolves the session; a page without one goes to sign-in, anything else gets 401 (HW-UI-1). */
  const withSession: MiddlewareHandler<UiEnv> = async (c, next) => {
    const session = await sessions.resolve(getCookie(c, cookieName));
    if (!session) {
      if (c.req.method === "GET" && !c.req.path.startsWith("/ui/events")) return c.redirect("/ui/login", 303);
      return c.text("sign in first", 401);
    }
    c.set("session", session);
    await next();
  };

  /** HW-UI-2: the Origin must be the plane's own; on a signed-in request the CSRF token must match the session's. */
  const checkOrigin = (c: Context) => {
    const origin = c.req.header("origin");
    if (origin === undefined || origin !== expectedOrigin(c)) throw new UiRefusal(403, `cross-origin request refused (Origin ${origin ?? "missing"})`);
  };
  /** The posted form; a body that is not a well-formed form is a 400 (never a 500 with a stack, HW-HTTP-2). */
  const parseFormBody = async (c: Context): Promise<Record<string, unknown>> => {
    const type = c.req.header("content-type") ?? "";
    if (!type.startsWith("application/x-www-form-urlencoded") && !type.startsWith("multipart/form-data")) throw new UiRefusal(400, "a form body is required");
    try {
      return await c.req.parseBody();
    } catch {
      throw new UiRefusal(400, "malformed form body");
    }
  };
  const readForm = async (c: UiContext): Promise<Record<string, string>> => {
    checkOrigin(c);
    const body = await parseFormBody(c);
    const form: Record<string, string> = {};
    for (const [key, value] of Object.entries(body)) if (typeof value === "string") form[key] = value;
    const token = form._csrf ?? c.req.header("x-csrf-token") ?? "";
    if (!sameToken(token, c.get("session").csrfToken)) throw new UiRefusal(403, "missing or wrong CSRF token; reload the page and try again");
    return form;
  };
  const requireRole = (c: UiContext, need: Role) => {
    const have = c.get("session").principal.role;
    if (!roleAllows(have, need)) throw new UiRefusal(403, `role ${have} may not do this; needs ${need}`);
  };
  const requireConfirmed = (form: Record<string, string>) => {
    if (form.confirmed !== "yes") throw new UiRefusal(400, "the action was not confirmed");
  };
  const reasonOf = (form: Record<string, string>): string => {
    const parsed = reasonBody.safeParse({ reason: form.reason ?? "" });
    if (!parsed.success) throw new UiRefusal(400, validationFailure(parsed.error, "form").body.error.message);
    return parsed.data.reason;
  };

  /** Wraps a handler: refusals and the service's errors become an error page with the API's status and message. */
  const guarded =
    (handler: (c: UiContext) => Promise<Response>) =>
    async (c: UiContext): Promise<Response> => {
      try {
        return await handler(c);
      } catch (error) {
        if (error instanceof UiRefusal) return errorPage(c, error.status, error.message);
        const known = httpErrorFor(error);
        if (known) return errorPage(c, known.status, known.body.error.message);
        logger.error({ err: error, path: c.req.path }, "dashboard request failed");
        return errorPage(c, 500, "internal error (see the plane's log)");
      }
    };
  const back = (c: Context, to: string, notice: string) => c.redirect(`${to}${to.includes("?") ? "&" : "?"}notice=${encodeURIComponent(notice)}`, 303);
  /**
   * POST `path` (with an `:id`, at most 128 characters used) acting on one item: the role, then the confirmation
   * box (HW-UI-2), then `run`; back to `to` with the notice `<done> <id>`.
   */
  const confirmedIdAction = (path: string, role: Role, done: string, to: string, run: (actor: Actor, id: string, form: Record<string, string>) => Promise<unknown>) =>
    ui.post(
      path,
      guarded(async (c) => {
        const form = await readForm(c);
        requireRole(c, role);
        requireConfirmed(form);
        const id = (c.req.param("id") ?? "").slice(0, 128);
        await run(actorOf(c.get("session")), id, form);
        return back(c, to, `${done} ${id}`);
      }),
    );

  // --- frame ----------------------------------------------------------------------------------------------------
  app.get("/", (c) => c.redirect("/ui/", 302));
  app.get("/ui", (c) => c.redirect("/ui/", 302));
  app.use("/ui/*", dashboardHeaders);
  app.use("/ui/*", async (c, next) => {
    await next();
    if (!c.res.headers.has("cache-control")) c.res.headers.set("Cache-Control", "no-store");
  });
  app.get("/ui/assets/:name", (c) => {
    const asset = ASSETS[(c.req.param("name") ?? "")];
    if (!asset) return c.text("not found", 404);
    return c.body(asset.body, 200, { "Content-Type": asset.type, "Cache-Control": "no-cache" });
  });

  // --- sign-in (HW-UI-1) ----------------------------------------------------------------------------------------
  app.get("/ui/login", async (c) => html(c, { title: "Sign in", principal: null }, <LoginPage />));
  app.post("/ui/login", async (c) => {
    try {
      checkOrigin(c); // HW-UI-2: no login CSRF
    } catch (error) {
      return html(c, { title: "Sign in", principal: null }, <LoginPage error={(error as Error).message} />, 403);
    }
    let body: Record<string, unknown>;
    try {
      body = await parseFormBody(c);
    } catch (error) {
      return html(c, { title: "Sign in", principal: null }, <LoginPage error={(error as Error).message} />, 400);
    }
    const token = typeof body.token === "string" ? body.token.trim() : "";
    const opened = token.length > 0 && token.length <= 512 ? await sessions.open(token) : null;
    if (!opened) return html(c, { title: "Sign in", principal: null }, <LoginPage error="unknown, revoked or expired API token" />, 401);
    setCookie(c, cookieName, opened.sessionId, {
      httpOnly: true,
      secure: deps.secure,
      sameSite: "Strict",
      path: "/",
      expires: opened.session.expiresAt,
    });
    logger.info({ tokenId: opened.session.principal.id, role: opened.session.principal.role }, "dashboard sign-in");
    return c.redirect("/ui/", 303);
  });

  ui.use("/ui/*", async (c, next) => {
    if (c.req.path === "/ui/login" || c.req.path.startsWith("/ui/assets/")) return next();
    return withSession(c, next);
  });

  ui.post(
    "/ui/logout",
    guarded(async (c) => {
      await readForm(c);
      await sessions.close(c.get("session"));
      deleteCookie(c, cookieName, { path: "/", secure: deps.secure });
      return c.redirect("/ui/login", 303);
    }),
  );

  // --- live events (HW-SSE-1 through the session) ---------------------------------------------------------------
  if (deps.hub && roles.stream) {
    const hub = deps.hub;
    const need = roles.stream;
    ui.get(
      "/ui/events",
      guarded(async (c) => {
        requireRole(c, need);
        const parsed = z.object({ deviceId: deviceParams.shape.deviceId.optional(), after: z.string().max(20).optional() }).safeParse(c.req.query());
        if (!parsed.success) throw new UiRefusal(400, validationFailure(parsed.error, "query").body.error.message);
        return eventStreamResponse(c, hub, parsed.data.deviceId ? { deviceId: parsed.data.deviceId } : {}, 15_000, parsed.data.after, c.get("session").principal.id);
      }),
    );
  }

  // --- fleet ----------------------------------------------------------------------------------------------------
  ui.get(
    "/ui/",
    guarded(async (c) => {
      requireRole(c, roles.listDevices);
      const parsed = deviceListQuery.safeParse(Object.fromEntries(Object.entries(c.req.query()).filter(([k, v]) => v !== "" && k !== "notice")));
      if (!parsed.success) throw new UiRefusal(400, validationFailure(parsed.error, "query").body.error.message);
      const { limit: _ignored, ...filter } = parsed.data;
      const query: FleetQuery = { ...filter, limit: FLEET_PAGE_SIZE };
      const [counts, page, since] = await Promise.all([
        fleetCounts(db),
        // One row more than shown tells whether there is a next page.
        service.listDevices({ ...stripUndefined(filter), limit: FLEET_PAGE_SIZE + 1 }),
        lastEventId(db),
      ]);
      const frame = { ...frameOf(c, "Fleet", "/ui/"), ...(deps.hub ? { live: `/ui/events?after=${since}` } : {}) };
      return html(c, frame, <FleetPage counts={counts} devices={page.slice(0, FLEET_PAGE_SIZE)} query={query} hasMore={page.length > FLEET_PAGE_SIZE} />);
    }),
  );

  ui.get(
    "/ui/pending",
    guarded(async (c) => {
      requireRole(c, roles.listDevices);
      const have = c.get("session").principal.role;
      const devices = await service.listDevices({ enrollment: "pending", limit: 500, offset: 0 });
      const can = (name: string) => roleAllows(have, deviceActions.find((a) => a.name === name)!.role);
      return html(c, frameOf(c, "Pending enrollments", "/ui/pending"), <PendingPage devices={devices} csrf={c.get("session").csrfToken} canAccept={can("accept")} canReject={can("reject")} />);
    }),
  );

  // --- device page ----------------------------------------------------------------------------------------------
  ui.get(
    "/ui/devices/:deviceId",
    guarded(async (c) => {
      requireRole(c, roles.getDevice);
      requireRole(c, roles.history);
      requireRole(c, roles.commands);
      const deviceId = parseDeviceId((c.req.param("deviceId") ?? ""));
      const now = deps.now?.() ?? Date.now();
      const [device, history, commands, samples, since] = await Promise.all([
        service.getDevice(deviceId),
        service.history(deviceId, 100),
        service.listCommands(deviceId, 50),
        telemetryHistory(db, deviceId, new Date(now - TELEMETRY_WINDOW_MS)),
        lastEventId(db),
      ]);
      const have = c.get("session").principal.role;
      const actions = deviceActions.filter((a) => roleAllows(have, a.role) && a.offered(device)).map(({ name, label, reason, danger }) => ({ name, label, reason, ...(danger ? { danger } : {}) }));
      const frame = { ...frameOf(c, `Device ${deviceId}`), ...(deps.hub ? { live: `/ui/events?deviceId=${encodeURIComponent(deviceId)}&after=${since}` } : {}) };
      return html(c, frame, <DevicePage device={device} history={history} commands={commands} samples={samples} actions={actions} csrf={c.get("session").csrfToken} />);
    }),
  );

  ui.post(
    "/ui/devices/:deviceId/:action",
    guarded(async (c) => {
      const form = await readForm(c);
      const action = deviceActions.find((a) => a.name === (c.req.param("action") ?? ""));
      if (!action) throw new UiRefusal(400, `unknown action ${JSON.stringify((c.req.param("action") ?? "").slice(0, 32))}`);
      requireRole(c, action.role);
      const deviceId = parseDeviceId((c.req.param("deviceId") ?? ""));
      requireConfirmed(form);
      const reason = action.reason ? reasonOf(form) : "";
      await action.run(actorOf(c.get("session")), deviceId, reason);
      return back(c, `/ui/devices/${encodeURIComponent(deviceId)}`, `${action.label}: done`);
    }),
  );

  // --- reference values -----------------------------------------------------------------------------------------
  ui.get(
    "/ui/reference-values",
    guarded(async (c) => {
      requireRole(c, roles.references);
      const sets = await service.listReferenceValues({});
      const canApprove = roleAllows(c.get("session").principal.role, roles.approveReference);
      return html(c, frameOf(c, "Reference values", "/ui/reference-values"), <ReferenceValuesPage sets={sets} csrf={c.get("session").csrfToken} canApprove={canApprove} />);
    }),
  );
  confirmedIdAction("/ui/reference-values/:id/approve", roles.approveReference, "approved", "/ui/reference-values", (actor, id) => service.approveReferenceValues(actor, id));

  // --- policies -------------------------------------------------------------------------------------------------
  if (deps.policies && roles.listPolicies && roles.putPolicy) {
    const policies = deps.policies;
    const listRole = roles.listPolicies;
    const putRoles = roles.putPolicy;
    const render = async (c: UiContext, draft?: { kind: string; text: string }, error?: string) => {
      const lists = await Promise.all(POLICY_KINDS.map((kind) => policies.listPolicies(kind)));
      const have = c.get("session").principal.role;
      const frame = { ...frameOf(c, "Policies", "/ui/policies"), ...(error ? { error } : {}) };
      return html(c, frame, <PoliciesPage lists={lists as never} csrf={c.get("session").csrfToken} canEdit={POLICY_KINDS.every((k) => roleAllows(have, putRoles[k]))} draft={draft} />, error ? 400 : 200);
    };
    ui.get(
      "/ui/policies",
      guarded(async (c) => {
        requireRole(c, listRole);
        return render(c);
      }),
    );
    ui.post(
      "/ui/policies/:kind",
      guarded(async (c) => {
        const form = await readForm(c);
        const kind = POLICY_KINDS.find((k) => k === (c.req.param("kind") ?? ""));
        if (!kind) throw new UiRefusal(400, "unknown policy kind");
        requireRole(c, putRoles[kind]);
        requireConfirmed(form);
        const text = form.body ?? "";
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          return render(c, { kind, text }, "body: not valid JSON");
        }
        // The API's own validator, so the page shows the API's message (HW-POLICY-1, HW-HTTP-2).
        const parsed = policyInputSchemas[kind].safeParse(body);
        if (!parsed.success) return render(c, { kind, text }, validationFailure(parsed.error, "body").body.error.message);
        try {
          const change = await policies.putPolicy(actorOf(c.get("session")), kind, parsed.data as never);
          return back(c, "/ui/policies", `stored ${kind} policy version ${change.policy.version}; sent to ${change.delivery.devices} devices`);
        } catch (error) {
          const known = httpErrorFor(error);
          if (known && known.status < 500) return render(c, { kind, text }, known.body.error.message);
          throw error;
        }
      }),
    );
  }

  // --- releases and rollouts ------------------------------------------------------------------------------------
  if (deps.rollouts && roles.listRollouts && roles.controlRollout) {
    const rollouts = deps.rollouts;
    const listRole = roles.listRollouts;
    const control = roles.controlRollout;
    ui.get(
      "/ui/rollouts",
      guarded(async (c) => {
        requireRole(c, listRole);
        const [list, targets] = await Promise.all([rollouts.list(100), deps.listTargets ? deps.listTargets() : Promise.resolve([])]);
        const have = c.get("session").principal.role;
        const canControl = roleAllows(have, control.pause) && roleAllows(have, control.resume) && roleAllows(have, control.cancel);
        return html(c, frameOf(c, "Releases & rollouts", "/ui/rollouts"), <RolloutsPage targets={targets.map((t) => ({ name: t.name }))} rollouts={list} csrf={c.get("session").csrfToken} canControl={canControl} />);
      }),
    );
    ui.post(
      "/ui/rollouts/:id/:action",
      guarded(async (c) => {
        const form = await readForm(c);
        const action = (c.req.param("action") ?? "");
        if (action !== "pause" && action !== "resume" && action !== "cancel") throw new UiRefusal(400, "unknown rollout action");
        requireRole(c, control[action]);
        requireConfirmed(form);
        const id = (c.req.param("id") ?? "").slice(0, 64);
        const actor = actorOf(c.get("session"));
        if (action === "resume") await rollouts.resume(actor, id);
        else if (action === "pause") await rollouts.pause(actor, id, reasonOf(form));
        else await rollouts.cancel(actor, id, reasonOf(form));
        return back(c, "/ui/rollouts", `${action}: ${id}`);
      }),
    );
  }

  // --- audit ----------------------------------------------------------------------------------------------------
  ui.get(
    "/ui/audit",
    guarded(async (c) => {
      requireRole(c, roles.audit);
      const parsed = pageQuery.safeParse({ limit: 100, offset: c.req.query("offset") ?? 0 });
      if (!parsed.success) throw new UiRefusal(400, validationFailure(parsed.error, "query").body.error.message);
      const entries = await service.listAudit(parsed.data.limit, parsed.data.offset);
      return html(c, frameOf(c, "Audit log", "/ui/audit"), <AuditPage entries={entries} offset={parsed.data.offset} limit={parsed.data.limit} />);
    }),
  );

  // --- API tokens -----------------------------------------------------------------------------------------------
  ui.get(
    "/ui/tokens",
    guarded(async (c) => {
      requireRole(c, roles.listTokens);
      return html(c, frameOf(c, "API tokens", "/ui/tokens"), <TokensPage tokens={await service.listApiTokens()} csrf={c.get("session").csrfToken} />);
    }),
  );
  ui.post(
    "/ui/tokens",
    guarded(async (c) => {
      const form = await readForm(c);
      requireRole(c, roles.createToken);
      requireConfirmed(form);
      const parsed = apiTokenBody.safeParse({ role: form.role, label: form.label });
      if (!parsed.success) throw new UiRefusal(400, validationFailure(parsed.error, "form").body.error.message);
      const created = await service.createApiToken(actorOf(c.get("session")), parsed.data);
      // Shown once, on this answer only (never in a URL).
      return html(c, frameOf(c, "API tokens", "/ui/tokens"), <TokensPage tokens={await service.listApiTokens()} csrf={c.get("session").csrfToken} created={created} />);
    }),
  );
  confirmedIdAction("/ui/tokens/:id/revoke", roles.revokeToken, "revoked", "/ui/tokens", (actor, id, form) => service.revokeApiToken(actor, id, reasonOf(form)));
}

function parseDeviceId(raw: string): string {
  const parsed = deviceParams.safeParse({ deviceId: raw });
  if (!parsed.success) throw new UiRefusal(400, validationFailure(parsed.error, "path").body.error.message);
  return parsed.data.deviceId;
}

function stripUndefined<T extends Record<string, unknown>>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
