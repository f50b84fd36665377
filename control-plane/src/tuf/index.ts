/** The control plane's TUF repository (see repository.ts) and the TUF key helpers shared with the release CLI. */
export * from "./keys.js";
export * from "./release-metadata.js";
export * from "./repository.js";
export * from "./reference-values.js";
