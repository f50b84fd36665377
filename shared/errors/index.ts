/**
 * One small error tree for code shared by the agent and the control plane (./tree.ts), and the one converter from
 * zod errors to it (./zod.ts). Callers branch on the class (`instanceof`), never on message text.
 */
export * from "./tree.js";
export * from "./zod.js";
