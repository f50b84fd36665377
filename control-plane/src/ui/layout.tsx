/** @jsxImportSource hono/jsx */
/**
 * The dashboard's page frame and shared pieces (navigation, state badges, action forms). Markup only: every value
 * is escaped by hono/jsx, and nothing here carries inline script or style (HW-UI-3).
 */
import type { Child } from "hono/jsx";
import type { ApiPrincipal } from "../service/index.js";

export const NAV = [
  ["/ui/", "Fleet"],
  ["/ui/pending", "Pending"],
  ["/ui/reference-values", "Reference values"],
  ["/ui/policies", "Policies"],
  ["/ui/rollouts", "Releases & rollouts"],
  ["/ui/audit", "Audit"],
  ["/ui/tokens", "API tokens"],
] as const;

export interface PageFrame {
  title: string;
  current?: string;
  principal: ApiPrincipal | null;
  csrf?: string;
  notice?: string | undefined;
  error?: string | undefined;
  /** Stream URL for live updates (app.js opens an EventSource to it). */
  live?: string;
}

export function Layout(props: PageFrame & { children?: Child }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${props.title} · Hashward`}</title>
        <link rel="stylesheet" href="/ui/assets/app.css" />
        <script src="/ui/assets/app.js" defer></script>
      </head>
      <body data-live={props.live}>
        {props.principal && (
          <nav>
            <strong>Hashward</strong>
            {NAV.map(([href, label]) => (
              <a href={href} class={props.current === href ? "current" : undefined}>
                {label}
              </a>
            ))}
            <span class="who" data-role={props.principal.role}>
              {props.principal.label} ({props.principal.role})
            </span>
            <form method="post" action="/ui/logout">
              <input type="hidden" name="_csrf" value={props.csrf} />
              <button type="submit">Sign out</button>
            </form>
          </nav>
        )}
        <main>
          <h1>{props.title}</h1>
          {props.notice && (
            <p class="notice" role="status">
              {props.notice}
            </p>
          )}
          {props.error && (
            <p class="error" role="alert">
              {props.error}
            </p>
          )}
          {props.children}
        </main>
      </body>
    </html>
  );
}

/** A state value as a badge; `data-field` lets app.js move it live. */
export function State(props: { value: string; field?: string }) {
  return (
    <span class={`state s-${props.value}${props.field ? ` ${props.field}` : ""}`} data-field={props.field}>
      {props.value}
    </span>
  );
}

/**
 * A POST form for one action: CSRF token (HW-UI-2), a required reason when `reason` is set, and a confirmation
 * (app.js asks, then sets `confirmed=yes`; the plane refuses the action without it).
 */
export function ActionForm(props: { action: string; csrf: string; label: string; confirm: string; reason?: boolean; danger?: boolean; children?: Child }) {
  return (
    <form method="post" action={props.action} class="action" data-confirm={props.confirm}>
      <input type="hidden" name="_csrf" value={props.csrf} />
      <input type="hidden" name="confirmed" value="" />
      {props.children}
      {props.reason && <input name="reason" required maxlength={1024} placeholder="reason" aria-label={`reason to ${props.label.toLowerCase()}`} />}
      <button type="submit" class={props.danger ? "danger" : undefined}>
        {props.label}
      </button>
    </form>
  );
}

export const when = (iso: string | Date | null | undefined): string => (iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) : "never");

export const json = (value: unknown): string => (value === undefined ? "" : JSON.stringify(value));
