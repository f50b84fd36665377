/**
 * Log hygiene shared by the broker and the HTTP API (HW-LOG-1, docs/rules.md): whatever an unauthenticated peer
 * chose (MQTT username, client id, topic, HTTP path) is clipped before it reaches a log line, so log volume per
 * attempt is bounded whatever the peer sends.
 */

/** Longest attacker-chosen string copied into a log line, in characters. */
export const MAX_LOGGED_FIELD_CHARS = 128;

/**
 * `value` cut to `max` characters (default MAX_LOGGED_FIELD_CHARS) with its original length appended, so a
 * 60 KB username is still recognisable as one: `"abc...(60000 chars)"`. undefined/null pass through as undefined.
 */
export function clipForLog(value: string | undefined | null, max = MAX_LOGGED_FIELD_CHARS): string | undefined {
  if (value === undefined || value === null) return undefined;
  return value.length <= max ? value : `${value.slice(0, max)}...(${value.length} chars)`;
}
