import { describe, expect, it } from "vitest";
import { isRefusedAddress } from "./targets.js";

describe("webhook target addresses (HW-HOOK-3)", () => {
  it.each(["127.0.0.1", "127.8.9.10", "169.254.169.254", "0.0.0.0", "::1", "[::1]", "0:0:0:0:0:0:0:1", "::", "fe80::1", "FE80::1%eth0", "[fe80::abcd%wlan0]", "::ffff:127.0.0.1", "::FFFF:169.254.1.1", "::ffff:7f00:1"])(
    "refuses %s in any spelling",
    (address) => {
      expect(isRefusedAddress(address)).toBe(true);
    },
  );

  it.each(["10.0.0.1", "192.0.2.7", "2001:db8::1", "::ffff:192.0.2.7", "fec0::1", "hooks.example", "127.1", "not an ip"])("lets %s through to the other checks", (address) => {
    expect(isRefusedAddress(address)).toBe(false);
  });
});
