/** Operator events: kinds, the writer used inside state-change transactions, and the live hub. */
export * from "./kinds.js";
export { newMessageId, onPlaneEventsCommitted, planeEventsForTransitions, recordPlaneEvents, type PlaneEventRecord } from "./record.js";
export { createEventHub, matches, type EventFilter, type EventHub, type EventHubOptions, type EventSubscription } from "./hub.js";
