import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ConflictError } from "../errors.js";
import {
  APPRAISAL_TABLE,
  appraisalEventFor,
  canTransition,
  CONTAINMENT_TABLE,
  ENROLLMENT_TABLE,
  type MachineName,
  mermaidEdges,
  NEW,
  TABLES,
  transition,
} from "./index.js";
import { DRAWN_MACHINES, stateMachinesMarkdown } from "./doc.js";

describe("trust state machines", () => {
  it("follow the table for legal edges", () => {
    expect(transition("enrollment", NEW, "enroll")).toBe("pending");
    expect(transition("enrollment", "pending", "accept")).toBe("accepted");
    expect(transition("containment", "none", "quarantine-requested")).toBe("quarantine_requested");
    expect(transition("containment", "quarantine_requested", "quarantine-acked")).toBe("quarantined");
    expect(transition("containment", "release_requested", "command-expired")).toBe("quarantined");
    expect(transition("appraisal", "stale", appraisalEventFor("affirming"))).toBe("trusted");
  });

  it("reject illegal edges with ConflictError", () => {
    expect(() => transition("enrollment", "accepted", "accept")).toThrow(ConflictError);
    expect(() => transition("containment", "none", "quarantine-acked")).toThrow(ConflictError);
    expect(() => transition("containment", "quarantined", "quarantine-requested")).toThrow(ConflictError);
    expect(canTransition("containment", "none", "release-requested")).toBe(false);
  });

  it("keep revoked terminal", () => {
    expect(ENROLLMENT_TABLE.filter((edge) => edge.from === "revoked")).toEqual([]);
    for (const event of ["enroll", "enroll-with-token", "preauthorize", "accept", "reject", "revoke"] as const) {
      expect(() => transition("enrollment", "revoked", event)).toThrow(ConflictError);
    }
  });

  it("enter stale only from the staleness timer, never from contraindicated, and leave it on appraisal", () => {
    const intoStale = APPRAISAL_TABLE.filter((edge) => edge.to === "stale");
    expect(intoStale.every((edge) => edge.event === "stale-timer")).toBe(true);
    expect(canTransition("appraisal", "contraindicated", "stale-timer")).toBe(false);
    const outOfStale = APPRAISAL_TABLE.filter((edge) => edge.from === "stale" && edge.event !== "sequence-reset");
    expect(outOfStale.map((edge) => edge.event).sort()).toEqual(
      ["appraised-affirming", "appraised-contraindicated", "appraised-none", "appraised-warning"].sort(),
    );
  });

  it("HW-EVD-2: a sequence reset holds every verdict at unknown except contraindicated, which it never clears", () => {
    for (const from of ["unknown", "trusted", "warning", "stale"] as const) expect(transition("appraisal", from, "sequence-reset")).toBe("unknown");
    expect(canTransition("appraisal", "contraindicated", "sequence-reset")).toBe(false);
    expect(APPRAISAL_TABLE.filter((edge) => edge.event === "sequence-reset").every((edge) => edge.to === "unknown")).toBe(true);
  });

  it("STATE_MACHINES.md states the appraisal-under-containment and sequence-reset rules", () => {
    const doc = readFileSync(new URL("./STATE_MACHINES.md", import.meta.url), "utf8");
    expect(doc).toContain("**Appraisal under containment (HW-APPRAISE-3).**");
    expect(doc).toContain("**Sequence reset (HW-EVD-2).**");
  });

  it("complete containment only on an ack", () => {
    const completions = CONTAINMENT_TABLE.filter((edge) => edge.to === "quarantined" && edge.from !== "release_requested");
    expect(completions.map((edge) => edge.event)).toEqual(["quarantine-acked"]);
  });

  it("STATE_MACHINES.md lists every table edge and matches the generator", () => {
    const doc = readFileSync(new URL("./STATE_MACHINES.md", import.meta.url), "utf8");
    for (const machine of Object.keys(TABLES) as MachineName[]) {
      for (const line of mermaidEdges(machine)) expect(doc).toContain(line);
    }
    // One generator draws every machine: trust, rollout and the agent's update journal.
    expect(DRAWN_MACHINES.map((m) => m.name)).toEqual(["enrollment", "appraisal", "containment", "rollout", "update-journal"]);
    for (const machine of DRAWN_MACHINES) expect(doc).toContain(machine.mermaid());
    expect(doc).toBe(stateMachinesMarkdown());
  });
});
