/**
 * State machines as data: a machine is
 * its states, its events and a transition table; `transition(state, event)` answers the next state from the table
 * or throws IllegalTransitionError. Nothing else decides a state change, so the table, the diagram drawn from it
 * (`mermaid`, written into control-plane/src/trust/STATE_MACHINES.md by one generator) and the behaviour agree.
 *
 * Used by the plane's trust machines (control-plane/src/trust), rollouts (control-plane/src/rollouts/machine.ts)
 * and the agent's update journal (shared/protocol/update.ts, enforced by agent/src/update/store.ts).
 *
 * Own code rather than a state-chart library (xstate, robot3): these machines are flat tables with no actors,
 * timers or nested states, are run inside database transactions and on the agent, and must render the exact
 * diagram checked by a test; a library would add an interpreter and a second notation for ~100 lines of lookups.
 */
import { ConflictError } from "../errors/index.js";

/** One edge: in `from`, `event` moves to `to` (when `guard`, if any, returns true for the caller's context). */
export interface MachineEdge<S extends string, E extends string, C = void> {
  from: S;
  event: E;
  to: S;
  /** Refuses the edge (IllegalTransitionError) when false, e.g. a precondition on the row being moved. */
  guard?: (context: C) => boolean;
}

export interface MachineSpec<S extends string, E extends string, C = void> {
  /** Names the machine in errors and diagrams (`enrollment`, `rollout`, `update-journal`). */
  name: string;
  states: readonly S[];
  events: readonly E[];
  /** A pseudo-state outside the thing's life (the enrollment machine's `new`, the update journal's `idle` = no journal), drawn as `[*]`. */
  start?: S;
  /** Where a new instance begins when no start state is modelled (drawn `[*] --> initial`). */
  initial?: S;
  /** States nothing leaves (drawn `state --> [*]`); the definition refuses an edge out of one. */
  terminal?: readonly S[];
  table: readonly MachineEdge<S, E, C>[];
  /** The refusal's message for an operator (default `<name>: no transition from "<from>" on "<event>"`). */
  refusal?: (from: S, event: E) => string;
}

/**
 * Thrown by `transition` for an event the table has no edge for in that state, or whose guard refused it.
 * A ConflictError: the request is valid but the current state forbids it (HTTP 409 on the plane).
 */
export class IllegalTransitionError extends ConflictError {
  override name = "IllegalTransitionError";
  constructor(
    readonly machine: string,
    readonly from: string,
    readonly event: string,
    message = `${machine}: no transition from ${JSON.stringify(from)} on ${JSON.stringify(event)}`,
  ) {
    super(message);
  }
}

export interface Machine<S extends string, E extends string, C = void> extends MachineSpec<S, E, C> {
  /** The next state; throws IllegalTransitionError when the table has no edge, or its guard refuses. */
  transition(from: S, event: E, context?: C): S;
  /** True when `transition` would succeed. */
  can(from: S, event: E, context?: C): boolean;
  /** The events `from` has an edge for (guards not consulted). */
  eventsFrom(from: S): E[];
  /** One mermaid line per edge (`from --> to : event`), the start pseudo-state drawn as `[*]` at either end. */
  mermaidEdges(): string[];
  /** A mermaid `stateDiagram-v2` of the whole table. */
  mermaid(): string;
}

/**
 * Checks and indexes a machine. Throws Error (a programming mistake, at module load) for an edge naming an unknown
 * state or event, a duplicate (from, event) edge, or an edge leaving a terminal state.
 */
export function defineMachine<S extends string, E extends string, C = void>(spec: MachineSpec<S, E, C>): Machine<S, E, C> {
  const index = new Map<string, MachineEdge<S, E, C>>();
  const key = (from: string, event: string) => `${from}\u0000${event}`;
  for (const edge of spec.table) {
    for (const state of [edge.from, edge.to]) if (!spec.states.includes(state)) throw new Error(`${spec.name}: unknown state ${state}`);
    if (!spec.events.includes(edge.event)) throw new Error(`${spec.name}: unknown event ${edge.event}`);
    if (spec.terminal?.includes(edge.from)) throw new Error(`${spec.name}: terminal state ${edge.from} has an edge (${edge.event})`);
    if (index.has(key(edge.from, edge.event))) throw new Error(`${spec.name}: duplicate edge ${edge.from} --${edge.event}-->`);
    index.set(key(edge.from, edge.event), edge);
  }
  const draw = (state: S) => (state === spec.start ? "[*]" : state);
  const mermaidEdges = () => spec.table.map((edge) => `${draw(edge.from)} --> ${draw(edge.to)} : ${edge.event}`);
  return {
    ...spec,
    transition(from, event, context) {
      const edge = index.get(key(from, event));
      if (!edge || (edge.guard && !edge.guard(context as C))) throw new IllegalTransitionError(spec.name, from, event, spec.refusal?.(from, event));
      return edge.to;
    },
    can(from, event, context) {
      const edge = index.get(key(from, event));
      return edge !== undefined && (!edge.guard || edge.guard(context as C));
    },
    eventsFrom(from) {
      return spec.table.filter((edge) => edge.from === from).map((edge) => edge.event);
    },
    mermaidEdges,
    mermaid() {
      const lines = ["stateDiagram-v2"];
      if (spec.initial !== undefined) lines.push(`    [*] --> ${spec.initial}`);
      lines.push(...mermaidEdges().map((line) => `    ${line}`));
      for (const state of spec.terminal ?? []) lines.push(`    ${state} --> [*]`);
      return lines.join("\n");
    },
  };
}
