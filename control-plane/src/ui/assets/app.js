// Hashward dashboard client script: served from the plane ('self' under the CSP, HW-UI-3), no eval, no inline
// handlers, and it never writes HTML: event data goes into the page as text only.
"use strict";

// Every action form asks for a confirmation; the plane refuses the action without `confirmed=yes`.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
  if (!window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    return;
  }
  const confirmed = form.elements.namedItem("confirmed");
  if (confirmed instanceof HTMLInputElement) confirmed.value = "yes";
});

// Live updates: the plane's event stream (cookie-authenticated, /ui/events) moves the state cells of the devices on
// the page and lists each event, without a reload.
const FIELD_OF_KIND = {
  "appraisal.changed": "appraisal",
  "device.stale": "appraisal",
  "device.quarantined": "containment",
  "device.released": "containment",
};
const streamUrl = document.body.dataset.live;
if (streamUrl) {
  const log = document.getElementById("live-log");
  const source = new EventSource(streamUrl);
  const onEvent = (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    const field = FIELD_OF_KIND[event.kind];
    const to = event.data && typeof event.data.to === "string" ? event.data.to : null;
    if (field && to && event.deviceId) {
      for (const row of document.querySelectorAll(`[data-device="${CSS.escape(event.deviceId)}"]`)) {
        for (const cell of row.querySelectorAll(`[data-field="${field}"]`)) {
          cell.textContent = to;
          cell.className = `state s-${to} ${field}`;
        }
      }
    }
    // The fleet's counts follow the transition (a state the stream does not announce, such as
    // quarantine_requested, is never counted below zero; a reload recounts exactly).
    const from = event.data && typeof event.data.from === "string" ? event.data.from : null;
    if (field && to && from && from !== to) {
      const shift = (state, by) => {
        const count = document.querySelector(`[data-counts="${field}"] [data-count="${CSS.escape(state)}"]`);
        if (count) count.textContent = String(Math.max(0, Number(count.textContent) + by));
      };
      shift(from, -1);
      shift(to, 1);
    }
    if (log) {
      const item = document.createElement("li");
      const reason = event.data && typeof event.data.reason === "string" ? ` (${event.data.reason})` : "";
      item.textContent = `${event.at} ${event.kind} ${event.deviceId ?? ""} ${to ? `→ ${to}` : ""}${reason}`;
      log.prepend(item);
      while (log.childElementCount > 50) log.lastElementChild?.remove();
    }
  };
  for (const kind of ["appraisal.changed", "device.quarantined", "device.released", "guard.alert", "rollout.halted", "session.takeover", "device.stale", "farm.alert"]) {
    source.addEventListener(kind, onEvent);
  }
  source.addEventListener("open", () => document.body.setAttribute("data-live-connected", "true"));
}
