export * from "./topics.js";
export * from "./schemas.js";
export * from "./parse.js";
export * from "./verify-command.js";
export * from "./release.js";
export * from "./indicators.js";
export * from "./update.js";
export * from "./policy.js";
