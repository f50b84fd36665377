export * from "./errors/index.js";
export * from "./canonical/index.js";
export * from "./crypto/index.js";
export * from "./protocol/index.js";
export * from "./auth/connect-token.js";
