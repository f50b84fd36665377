/**
 * Reading the bytes a cgminer-family miner really sends (HW-MINER-1). cgminer builds its JSON answers by hand
 * (api.c): `escape_string(str, isjson)` escapes only `"` and `\` in strings it does not control, every other
 * byte of a pool URL, worker name or device name goes out raw (TAB, other control bytes, bytes that are not
 * UTF-8), and the answer ends with a NUL byte. Strict JSON refuses raw control bytes inside strings, so a rogue
 * worker named `x<TAB>y` would make the whole `pools` answer "unparseable" and hide every pool in it.
 *
 * Accepted deviations, and only these:
 *   - raw bytes 0x00-0x1F inside a string (kept as they are in the value);
 *   - bytes that are not UTF-8 (decoded as U+FFFD: such a value never equals an approved URL or worker);
 *   - a backslash before a character JSON does not allow to be escaped, in fields cgminer does not escape
 *     (api_add_string): read as a literal backslash;
 *   - `}{` between two objects in an array, no comma (bmminer `stats`/`estats`, printed back to back);
 *   - whitespace or the NUL terminator at the end.
 * Everything else fails: a truncated answer (cut by a NUL, the close or the size cap) is never completed or
 * "repaired" into a shorter valid one, nesting deeper than MAX_ANSWER_DEPTH is refused before parsing.
 *
 * Own code rather than a tolerant-JSON library (jsonrepair, json5): those repair truncated input (closing the
 * open brackets), which would turn a cut `pools` answer into a shorter list that looks complete and clean.
 */
import { MinerApiMalformedError } from "./errors.js";

/** Deeper than any cgminer answer (joined commands: 5); refused before parsing (stack safety). */
export const MAX_ANSWER_DEPTH = 32;

const utf8 = new TextDecoder("utf-8", { fatal: false });

/**
 * Parses one answer (the bytes before the NUL terminator) into its top-level JSON object.
 * Throws MinerApiMalformedError naming the command and the first problem (truncated, too deep, not JSON).
 */
export function parseCgminerAnswer(raw: Uint8Array, command: string): Record<string, unknown> {
  const text = utf8.decode(raw);
  const out: string[] = [];
  const stack: string[] = [];
  let inString = false;
  let lastClosed = "";
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (inString) {
      if (ch === "\\") {
        const next = text[i + 1];
        if (next === undefined) break; // cut inside an escape: truncated
        if ('"\\/bfnrt'.includes(next) || (next === "u" && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6)))) {
          out.push(ch, next);
          i++;
        } else out.push("\\\\"); // a lone backslash from an unescaped field: the character itself
      } else if (ch === '"') {
        inString = false;
        out.push(ch);
      } else if (ch.charCodeAt(0) < 0x20) out.push(`\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`);
      else out.push(ch);
      continue;
    }
    switch (ch) {
      case '"':
        inString = true;
        lastClosed = "";
        out.push(ch);
        break;
      case "{":
      case "[":
        // bmminer prints array elements back to back: `}{` inside an array is `},{`.
        if (ch === "{" && lastClosed === "}" && stack.at(-1) === "[") out.push(",");
        stack.push(ch);
        if (stack.length > MAX_ANSWER_DEPTH) throw new MinerApiMalformedError(`${command}: answer nested deeper than ${MAX_ANSWER_DEPTH} levels`);
        lastClosed = "";
        out.push(ch);
        break;
      case "}":
      case "]": {
        const open = stack.pop();
        if (open !== (ch === "}" ? "{" : "[")) throw new MinerApiMalformedError(`${command}: answer is not JSON (unbalanced ${JSON.stringify(ch)} at byte ${i})`);
        lastClosed = ch;
        out.push(ch);
        break;
      }
      default:
        if (!/\s/.test(ch)) lastClosed = "";
        out.push(ch);
    }
  }
  if (inString || stack.length > 0) throw new MinerApiMalformedError(`${command}: answer is truncated (${text.length} characters, ${inString ? "inside a string" : `${stack.length} bracket(s) open`})`);
  let value: unknown;
  try {
    value = JSON.parse(out.join(""));
  } catch {
    throw new MinerApiMalformedError(`${command}: answer is not JSON (${JSON.stringify(text.slice(0, 60))})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new MinerApiMalformedError(`${command}: answer is not a JSON object`);
  return value as Record<string, unknown>;
}
