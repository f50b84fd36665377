/**
 * Dashboard sessions (HW-UI-1): signing in with an API token opens a server-side session; the browser holds only
 * a random session id in an HttpOnly, SameSite=Strict cookie (Secure over HTTPS). The database keeps the id's
 * sha256, the API token it was opened with, the CSRF token bound to it (HW-UI-2) and an absolute expiry.
 *
 * A session is resolved on every request (nothing cached, like HW-HTTP-1): it is valid only while it is unexpired,
 * not signed out, and its API token is still active (not revoked, not expired). The role is the token's role as
 * stored now, so revoking the token ends every session opened with it at its next request.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { and, eq, gt, isNull, or } from "drizzle-orm";
import { apiTokens, uiSessions, type Database } from "../db/index.js";
import { type Actor, type ApiPrincipal, type ControlPlaneService, recordAudit, type Role } from "../service/index.js";

/** Default absolute session lifetime: 12 hours (ms). */
export const DEFAULT_SESSION_TTL_MS = 12 * 3600_000;
/** base64url of 32 random bytes. */
const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;

export interface UiSession {
  /** sha256 hex of the session id: how it is referred to (sign-out), never the id itself. */
  idHash: string;
  principal: ApiPrincipal;
  csrfToken: string;
  expiresAt: Date;
}

export interface SessionStore {
  /**
   * Opens a session for `token` when it is an active API token (checked by the API's own
   * `authenticateApiToken`); returns the session id for the cookie and the session, or null for a bad token.
   * Audited as `ui.sign-in` (actor: the token).
   */
  open(token: string): Promise<{ sessionId: string; session: UiSession } | null>;
  /** The session of a cookie value, or null (malformed, unknown, expired, signed out, or its token inactive). */
  resolve(sessionId: string | undefined): Promise<UiSession | null>;
  /** Signs a session out (its cookie no longer resolves); audited as `ui.sign-out`. */
  close(session: UiSession): Promise<void>;
}

const actorOf = (principal: ApiPrincipal): Actor => ({ kind: "operator", id: principal.id, role: principal.role });
const sha256 = (value: string) => createHash("sha256").update(value).digest("hex");
const randomId = () => randomBytes(32).toString("base64url");

/** Constant-time comparison of two CSRF tokens (HW-UI-2); false for any length mismatch. */
export function sameToken(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

export function createSessionStore(deps: { db: Database; service: Pick<ControlPlaneService, "authenticateApiToken">; now?: () => number; ttlMs?: number }): SessionStore {
  const { db, service } = deps;
  const now = deps.now ?? Date.now;
  const ttlMs = deps.ttlMs ?? DEFAULT_SESSION_TTL_MS;
  return {
    async open(token) {
      const principal = await service.authenticateApiToken(token);
      if (!principal) return null;
      const sessionId = randomId();
      const at = now();
      const session: UiSession = { idHash: sha256(sessionId), principal, csrfToken: randomId(), expiresAt: new Date(at + ttlMs) };
      await db.transaction(async (tx) => {
        await tx.insert(uiSessions).values({ idHash: session.idHash, tokenId: principal.id, csrfToken: session.csrfToken, createdAt: new Date(at), expiresAt: session.expiresAt });
        await recordAudit(tx, [{ actor: actorOf(principal), action: "ui.sign-in", target: principal.id, detail: { expiresAt: session.expiresAt.toISOString() } }], new Date(at));
      });
      return { sessionId, session };
    },

    async resolve(sessionId) {
      if (sessionId === undefined || !SESSION_ID.test(sessionId)) return null;
      const at = new Date(now());
      const [row] = await db
        .select({ idHash: uiSessions.idHash, csrfToken: uiSessions.csrfToken, expiresAt: uiSessions.expiresAt, tokenId: apiTokens.id, role: apiTokens.role, label: apiTokens.label })
        .from(uiSessions)
        .innerJoin(apiTokens, eq(apiTokens.id, uiSessions.tokenId))
        .where(
          and(
            eq(uiSessions.idHash, sha256(sessionId)),
            isNull(uiSessions.revokedAt),
            gt(uiSessions.expiresAt, at),
            // HW-UI-1: the session lives only as long as its API token is active.
            isNull(apiTokens.revokedAt),
            or(isNull(apiTokens.expiresAt), gt(apiTokens.expiresAt, at)),
          ),
        );
      if (!row) return null;
      return { idHash: row.idHash, csrfToken: row.csrfToken, expiresAt: row.expiresAt, principal: { id: row.tokenId, role: row.role as Role, label: row.label } };
    },

    async close(session) {
      const at = new Date(now());
      await db.transaction(async (tx) => {
        await tx.update(uiSessions).set({ revokedAt: at }).where(and(eq(uiSessions.idHash, session.idHash), isNull(uiSessions.revokedAt)));
        await recordAudit(tx, [{ actor: actorOf(session.principal), action: "ui.sign-out", target: session.principal.id }], at);
      });
    },
  };
}
