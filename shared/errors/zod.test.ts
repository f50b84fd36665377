import { describe, expect, it } from "vitest";
import { z } from "zod";
import { describeZodError, firstZodIssue, ValidationError, validationErrorFromZod } from "./index.js";

const schema = z.strictObject({ pools: z.array(z.strictObject({ url: z.string() })) });
const errorOf = (value: unknown): z.ZodError => {
  const result = schema.safeParse(value);
  if (result.success) throw new Error("expected a failure");
  return result.error;
};

describe("zod error converter", () => {
  it("names the first bad field by its dotted path, with a prefix when given", () => {
    const error = errorOf({ pools: [{ url: 1 }] });
    expect(firstZodIssue(error).field).toBe("pools.0.url");
    expect(describeZodError(error, ["policy"])).toMatch(/^policy\.pools\.0\.url: /);
  });

  it("names an unknown key and says so, at the root and nested", () => {
    expect(describeZodError(errorOf({ pools: [], extra: 1 }))).toBe("extra: unknown field");
    expect(firstZodIssue(errorOf({ pools: [{ url: "x", port: 1 }] })).field).toBe("pools.0.port");
  });

  it("says (root) when the value itself is wrong, and builds a ValidationError naming the field", () => {
    expect(describeZodError(errorOf("nope"))).toMatch(/^\(root\): /);
    const error = validationErrorFromZod(errorOf({ pools: [{}] }), "config");
    expect(error).toBeInstanceOf(ValidationError);
    expect(error.field).toBe("pools.0.url");
    expect(error.message).toMatch(/^config: pools\.0\.url: /);
  });
});
