/** Crash-safe files: atomic writes (HW-FAULT-10), streamed atomic writes and JSON state files. */
export * from "./atomic.js";
export * from "./json-state.js";
export * from "./stream.js";
export * from "./secret-file.js";
