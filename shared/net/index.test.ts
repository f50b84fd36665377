import { describe, expect, it } from "vitest";
import { ipFamily, ipv6Groups, normalizeIp, parseIp } from "./index.js";

describe("IP literals (ipaddr.js)", () => {
  it.each([
    ["127.0.0.1", "127.0.0.1"],
    ["0.0.0.0", "0.0.0.0"],
    ["255.255.255.255", "255.255.255.255"],
    ["10.200.99.1", "10.200.99.1"],
    ["::1", "0:0:0:0:0:0:0:1"],
    ["[::1]", "0:0:0:0:0:0:0:1"],
    ["0:0:0:0:0:0:0:1", "0:0:0:0:0:0:0:1"],
    ["0000:0000:0000:0000:0000:0000:0000:0001", "0:0:0:0:0:0:0:1"],
    ["2001:DB8::1", "2001:db8:0:0:0:0:0:1"],
    ["fe80::1%eth0", "fe80:0:0:0:0:0:0:1"],
    ["[FE80::1%wlan0]", "fe80:0:0:0:0:0:0:1"],
    ["::ffff:10.0.0.1", "10.0.0.1"],
    ["::FFFF:127.0.0.1", "127.0.0.1"],
    ["::ffff:7f00:1", "127.0.0.1"],
    ["64:ff9b::10.0.0.1", "64:ff9b:0:0:0:0:a00:1"],
  ])("%s is spelled %s", (text, normal) => {
    expect(normalizeIp(text)).toBe(normal);
  });

  it.each(["", "pool.example", "127.1", "0x7f.0.0.1", "01.2.3.4", "256.1.1.1", "1::2::3", "1:2:3:4:5:6:7:8:9", "::ffff:1.2.3", "::ffff:010.0.0.1", "::ffff:01.2.3.4", "12345::", "fe80::1%", "[::1"])(
    "%j is not an IP literal",
    (text) => {
      expect(parseIp(text)).toBeNull();
      expect(ipFamily(text)).toBe(0);
      expect(() => ipv6Groups(text)).toThrow(TypeError);
    },
  );

  it("names the family and gives an IPv6 address's eight groups in any spelling", () => {
    expect(ipFamily("10.0.0.1")).toBe(4);
    expect(ipFamily("[::1]")).toBe(6);
    expect(ipv6Groups("::ffff:127.0.0.1")).toEqual([0, 0, 0, 0, 0, 0xffff, 0x7f00, 1]);
    expect(ipv6Groups("2001:db8::")).toEqual([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]);
    expect(() => ipv6Groups("10.0.0.1")).toThrow(TypeError);
  });

  it("lowercases what is not an address (a host name) and drops its brackets", () => {
    expect(normalizeIp("Pool.Example")).toBe("pool.example");
  });
});
