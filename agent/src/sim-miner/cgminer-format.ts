/**
 * cgminer's API output format, byte for byte (cgminer api.c: `message()`, `print_data()`, `escape_string()`),
 * so the simulated miner sends what a real one does and the agent's reader is tested against the real thing.
 *
 * Strings are "binary strings": one character per byte (latin1), so bytes that are not UTF-8 go out unchanged.
 *
 * JSON form (request `{"command":"pools"}`):
 *   {"STATUS":[{"STATUS":"S","When":N,"Code":7,"Msg":"2 Pool(s)","Description":"..."}],"POOLS":[{...},{...}],"id":1}\0
 * Plain form (request `pools` or `pools|param`):
 *   STATUS=S,When=N,Code=7,Msg=2 Pool(s),Description=...|POOL=0,URL=...,...|POOL=1,...|\0
 * Joined commands (JSON only, `summary+pools`): {"summary":[<answer>],"pools":[<answer>],"id":1}\0
 *
 * escape_string: JSON answers escape only `"` and `\`; plain answers escape `,` `|` `=` and `\`. Only fields added
 * with api_add_escape (pool URL and user, addpool's Msg) are escaped at all; every other byte goes out raw.
 */

/** One field of a section. `escape` marks cgminer's api_add_escape fields (user-controlled strings). */
export type CgField = [name: string, value: string | number | boolean, how?: "escape" | "float"];

export interface CgSection {
  /** "POOLS", "SUMMARY", "STATS", ...; the plain form names each item by its first field instead. */
  name: string;
  items: CgField[][];
}

export interface CgStatus {
  status: "S" | "I" | "W" | "E" | "F";
  when: number;
  code: number;
  msg: string;
  description: string;
}

/** cgminer api.c escape_string(str, isjson). */
export function cgEscape(value: string, isJson: boolean): string {
  return isJson ? value.replace(/["\\]/g, (c) => `\\${c}`) : value.replace(/[,|=\\]/g, (c) => `\\${c}`);
}

function jsonValue([, value, how]: CgField): string {
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return how === "float" ? value.toFixed(2) : String(Math.trunc(value));
  return `"${how === "escape" ? cgEscape(value, true) : value}"`;
}

function plainValue([, value, how]: CgField): string {
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return how === "float" ? value.toFixed(2) : String(Math.trunc(value));
  return how === "escape" ? cgEscape(value, false) : value;
}

function statusFields(s: CgStatus): CgField[] {
  return [
    ["STATUS", s.status],
    ["When", s.when],
    ["Code", s.code],
    ["Msg", s.msg],
    ["Description", s.description],
  ];
}

/** One answer without the NUL terminator (joined answers nest it). */
export function cgAnswerBody(status: CgStatus, section: CgSection | null, isJson: boolean): string {
  if (!isJson) {
    const item = (fields: CgField[]) => `${fields.map((f) => `${f[0]}=${plainValue(f)}`).join(",")}|`;
    return item(statusFields(status)) + (section ? section.items.map(item).join("") : "");
  }
  const object = (fields: CgField[]) => `{${fields.map((f) => `"${f[0]}":${jsonValue(f)}`).join(",")}}`;
  const data = section ? `,"${section.name}":[${section.items.map(object).join(",")}]` : "";
  return `{"STATUS":[${object(statusFields(status))}]${data},"id":1}`;
}

/** A complete answer as bytes, NUL-terminated as cgminer sends it. */
export function cgAnswer(status: CgStatus, section: CgSection | null, isJson: boolean): Buffer {
  return Buffer.from(`${cgAnswerBody(status, section, isJson)}\0`, "latin1");
}

/** Joined commands (`summary+pools`): each answer under its command name, JSON only. */
export function cgJoined(parts: { command: string; body: string }[]): Buffer {
  return Buffer.from(`{${parts.map((p) => `"${p.command}":[${p.body}]`).join(",")},"id":1}\0`, "latin1");
}

/** A JS string as a binary string: characters above 0xFF become their UTF-8 bytes (one character per byte). */
export function toBinary(value: string): string {
  return value.replace(/[\u0100-\uffff]+/g, (run) => Buffer.from(run, "utf8").toString("latin1"));
}

export interface CgRequest {
  command: string;
  parameter: string;
  isJson: boolean;
}

/**
 * Parses a request as cgminer's api() does: `{` starts a JSON request (`command`, optional `parameter`),
 * anything else is `command|parameter`. Input and output are binary strings. Null when unreadable.
 */
export function parseCgRequest(binary: string): CgRequest | null {
  const text = binary.replace(/\0[\s\S]*$/, "").trim();
  if (text.startsWith("{")) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return null;
    }
    if (typeof value !== "object" || value === null) return null;
    const { command, parameter } = value as { command?: unknown; parameter?: unknown };
    if (typeof command !== "string") return null;
    const param = parameter === undefined || parameter === null ? "" : typeof parameter === "string" ? parameter : String(parameter);
    return { command: toBinary(command), parameter: toBinary(param), isJson: true };
  }
  const bar = text.indexOf("|");
  return bar >= 0 ? { command: text.slice(0, bar), parameter: text.slice(bar + 1), isJson: false } : { command: text, parameter: "", isJson: false };
}

/** api.c splits addpool's parameter on unescaped commas; `\x` is the character x. */
export function splitCgParameter(parameter: string): string[] {
  const parts: string[] = [];
  let current = "";
  for (let i = 0; i < parameter.length; i++) {
    const c = parameter[i]!;
    if (c === "\\" && i + 1 < parameter.length) current += parameter[++i];
    else if (c === ",") {
      parts.push(current);
      current = "";
    } else current += c;
  }
  parts.push(current);
  return parts;
}

/**
 * The URL a pool gets in cgminer's `pools` answer (setup_url): a URL with a scheme is kept as given, one
 * without gets `stratum+tcp://`; a `#...` tail is cut (check_extranonce_option in the forks that read #xnsub).
 */
export function cgPoolUrl(url: string): string {
  const cut = url.includes("#") ? url.slice(0, url.indexOf("#")) : url;
  return /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(cut) ? cut : `stratum+tcp://${cut}`;
}
