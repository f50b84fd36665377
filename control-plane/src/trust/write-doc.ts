/** Regenerates STATE_MACHINES.md from the transition tables: `npx tsx control-plane/src/trust/write-doc.ts`. */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { stateMachinesMarkdown } from "./doc.js";

writeFileSync(fileURLToPath(new URL("./STATE_MACHINES.md", import.meta.url)), stateMachinesMarkdown());
