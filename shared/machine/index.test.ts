import { describe, expect, it } from "vitest";
import { ConflictError } from "../errors/index.js";
import { defineMachine, IllegalTransitionError } from "./index.js";

type S = "off" | "on" | "broken";
type E = "press" | "smash";

describe("defineMachine (shared table-driven state machine)", () => {
  const lamp = defineMachine<S, E, { fused: boolean }>({
    name: "lamp",
    states: ["off", "on", "broken"],
    events: ["press", "smash"],
    initial: "off",
    terminal: ["broken"],
    table: [
      { from: "off", event: "press", to: "on", guard: (ctx) => !ctx.fused },
      { from: "on", event: "press", to: "off" },
      { from: "on", event: "smash", to: "broken" },
      { from: "off", event: "smash", to: "broken" },
    ],
  });

  it("answers the table's next state", () => {
    expect(lamp.transition("off", "press", { fused: false })).toBe("on");
    expect(lamp.transition("on", "smash", { fused: false })).toBe("broken");
    expect(lamp.eventsFrom("on")).toEqual(["press", "smash"]);
  });

  it("throws a typed IllegalTransitionError (a ConflictError) naming machine, state and event for an edge not in the table or refused by its guard", () => {
    for (const [from, event, ctx] of [["broken", "press", { fused: false }], ["off", "press", { fused: true }]] as const) {
      expect(lamp.can(from, event, ctx)).toBe(false);
      let thrown: unknown;
      try {
        lamp.transition(from, event, ctx);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(IllegalTransitionError);
      expect(thrown).toBeInstanceOf(ConflictError);
      expect(thrown).toMatchObject({ machine: "lamp", from, event });
      expect((thrown as Error).message).toBe(`lamp: no transition from "${from}" on "${event}"`);
    }
  });

  it("words the refusal for an operator when the machine says how", () => {
    const door = defineMachine({ name: "door", states: ["open", "shut"], events: ["close"], table: [{ from: "open", event: "close", to: "shut" }], refusal: (from, event) => `a ${from} door cannot ${event}` });
    expect(() => door.transition("shut", "close")).toThrow(new IllegalTransitionError("door", "shut", "close", "a shut door cannot close"));
  });

  it("refuses a malformed table when defined: unknown states or events, duplicate edges, edges out of a terminal state", () => {
    const base = { name: "m", states: ["a", "b"] as const, events: ["go"] as const };
    expect(() => defineMachine({ ...base, table: [{ from: "a", event: "go", to: "c" as "a" }] })).toThrow(/unknown state c/);
    expect(() => defineMachine({ ...base, table: [{ from: "a", event: "jump" as "go", to: "b" }] })).toThrow(/unknown event jump/);
    expect(() => defineMachine({ ...base, table: [{ from: "a", event: "go", to: "b" }, { from: "a", event: "go", to: "a" }] })).toThrow(/duplicate edge/);
    expect(() => defineMachine({ ...base, terminal: ["b"], table: [{ from: "b", event: "go", to: "a" }] })).toThrow(/terminal state b/);
  });

  it("draws the table as a mermaid state diagram, pseudo-states as [*]", () => {
    expect(lamp.mermaid()).toBe(
      ["stateDiagram-v2", "    [*] --> off", "    off --> on : press", "    on --> off : press", "    on --> broken : smash", "    off --> broken : smash", "    broken --> [*]"].join("\n"),
    );
    const life = defineMachine({ name: "life", states: ["none", "alive"], events: ["born", "die"], start: "none", table: [{ from: "none", event: "born", to: "alive" }, { from: "alive", event: "die", to: "none" }] });
    expect(life.mermaidEdges()).toEqual(["[*] --> alive : born", "alive --> [*] : die"]);
  });
});
