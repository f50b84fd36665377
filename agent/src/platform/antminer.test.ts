import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { tempDir, waitFor } from "../testing/index.js";
import { AntminerPlatform } from "./antminer.js";
import { PlatformError } from "./paths.js";
import { antminerTestBoard, type AntminerTestBoardOptions } from "./testing/antminer-board.js";

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

/** A board root (testing/antminer-board.ts), removed after the test. */
function board(opts: AntminerTestBoardOptions = {}) {
  const b = antminerTestBoard(opts);
  cleanups.push(b.cleanup);
  return b;
}

describe("Antminer platform (recorded commands)", () => {
  it("quarantine: stop the miner, HASHWARD chains that leave only the plane and DNS, bind-mount over the upgrade CGI", async () => {
    const { platform, exec } = board();
    await platform.quarantine({ controlPlaneHosts: ["plane.example.net", "198.51.100.20"] });
    expect(exec.calls).toEqual([
      "/etc/init.d/bmminer.sh stop",
      "iptables -N HASHWARD",
      "iptables -N HASHWARD_IN",
      "iptables -F HASHWARD",
      "iptables -F HASHWARD_IN",
      "iptables -A HASHWARD -o lo -j ACCEPT",
      "iptables -A HASHWARD -d 192.0.2.10 -j ACCEPT",
      "iptables -A HASHWARD -d 198.51.100.20 -j ACCEPT",
      "iptables -A HASHWARD -p udp -d 192.168.1.1 --dport 53 -j ACCEPT",
      "iptables -A HASHWARD -j DROP",
      "iptables -A HASHWARD_IN -i lo -j ACCEPT",
      "iptables -A HASHWARD_IN -s 192.0.2.10 -j ACCEPT",
      "iptables -A HASHWARD_IN -s 198.51.100.20 -j ACCEPT",
      "iptables -A HASHWARD_IN -m state --state ESTABLISHED,RELATED -j ACCEPT",
      "iptables -A HASHWARD_IN -j DROP",
      "iptables -C OUTPUT -j HASHWARD",
      "iptables -I OUTPUT 1 -j HASHWARD",
      "iptables -C INPUT -j HASHWARD_IN",
      "iptables -I INPUT 1 -j HASHWARD_IN",
      "ip6tables -N HASHWARD",
      "ip6tables -N HASHWARD_IN",
      "ip6tables -F HASHWARD",
      "ip6tables -F HASHWARD_IN",
      "ip6tables -A HASHWARD -o lo -j ACCEPT",
      "ip6tables -A HASHWARD -d 2001:db8::10 -j ACCEPT",
      "ip6tables -A HASHWARD -j DROP",
      "ip6tables -A HASHWARD_IN -i lo -j ACCEPT",
      "ip6tables -A HASHWARD_IN -s 2001:db8::10 -j ACCEPT",
      "ip6tables -A HASHWARD_IN -m state --state ESTABLISHED,RELATED -j ACCEPT",
      "ip6tables -A HASHWARD_IN -j DROP",
      "ip6tables -C OUTPUT -j HASHWARD",
      "ip6tables -I OUTPUT 1 -j HASHWARD",
      "ip6tables -C INPUT -j HASHWARD_IN",
      "ip6tables -I INPUT 1 -j HASHWARD_IN",
      "mount -o bind /dev/null /www/pages/cgi-bin/upgrade.cgi",
    ]);
    expect(await platform.isQuarantined()).toBe(true);
  });

  it("is idempotent: a second quarantine does not hook the chains twice nor mount twice", async () => {
    const { platform, exec, mount } = board({ chains: true, noIp6tables: true });
    mount("/www/pages/cgi-bin/upgrade.cgi");
    await platform.quarantine({ controlPlaneHosts: ["198.51.100.20"] });
    expect(exec.calls.filter((c) => c.includes(" -I "))).toEqual([]);
    expect(exec.calls.filter((c) => c.startsWith("mount"))).toEqual([]);
    expect(exec.calls.filter((c) => c.startsWith("ip6tables"))).toEqual(["ip6tables -N HASHWARD"]);
  });

  it("falls back to chmod 000 when the bind mount fails; release undoes it, unhooks, and starts the miner", async () => {
    const { platform, exec } = board({ mountFails: true, noIp6tables: true });
    await platform.quarantine({ controlPlaneHosts: ["198.51.100.20"] });
    expect(exec.calls).toContain("chmod 000 /www/pages/cgi-bin/upgrade.cgi");
    exec.calls.length = 0;
    await platform.release();
    expect(exec.calls).toEqual([
      "chmod 755 /www/pages/cgi-bin/upgrade.cgi",
      "iptables -D OUTPUT -j HASHWARD",
      "iptables -D OUTPUT -j HASHWARD",
      "iptables -F HASHWARD",
      "iptables -X HASHWARD",
      "iptables -D INPUT -j HASHWARD_IN",
      "iptables -D INPUT -j HASHWARD_IN",
      "iptables -F HASHWARD_IN",
      "iptables -X HASHWARD_IN",
      "ip6tables -D OUTPUT -j HASHWARD",
      "ip6tables -F HASHWARD",
      "ip6tables -X HASHWARD",
      "ip6tables -D INPUT -j HASHWARD_IN",
      "ip6tables -F HASHWARD_IN",
      "ip6tables -X HASHWARD_IN",
      "/etc/init.d/bmminer.sh start",
    ]);
  });

  it("release unmounts the CGI unless the vendor upgrade path is locked (enforcing mode)", async () => {
    const { platform, exec, mount } = board({ noIp6tables: true });
    mount("/www/pages/cgi-bin/upgrade.cgi");
    await platform.release();
    expect(exec.calls[0]).toBe("umount /www/pages/cgi-bin/upgrade.cgi");
    exec.calls.length = 0;
    await platform.disableVendorUpgrade();
    await platform.release();
    expect(exec.calls.some((c) => c.startsWith("umount"))).toBe(false);
  });

  it("miner restart runs the init script; a board without one is a PlatformError; paths stay under the root", async () => {
    const { platform, exec, root } = board();
    await platform.miner.restart();
    expect(exec.calls).toEqual(["/etc/init.d/bmminer.sh stop", "/etc/init.d/bmminer.sh start"]);
    const bare = new AntminerPlatform({ root: join(root, "nothing"), executor: exec });
    await expect(bare.quarantine({ controlPlaneHosts: [] })).rejects.toBeInstanceOf(PlatformError);
    expect(() => platform.resolve("/../etc/passwd")).toThrow(PlatformError);
    expect(new AntminerPlatform({ executor: exec }).resolve("/config/bmminer.conf")).toBe("/config/bmminer.conf");
  });

  it("a failing iptables command fails the quarantine (the ack then says failed)", async () => {
    const { platform, exec } = board({ noIp6tables: true });
    exec.respond = (command, args) => (command === "iptables" && args[0] === "-A" ? { code: 4, stderr: "iptables: No chain/target/match by that name." } : undefined);
    await expect(platform.quarantine({ controlPlaneHosts: ["198.51.100.20"] })).rejects.toThrow(/iptables -A HASHWARD -o lo -j ACCEPT exited 4/);
  });

  it("HW-Q-4: a plane name that does not resolve at boot gets its last-known addresses from the state dir", async () => {
    const state = tempDir();
    cleanups.push(state.cleanup);
    const before = board({ noIp6tables: true, stateDir: state.path });
    await before.platform.quarantine({ controlPlaneHosts: ["plane.example.net"] });
    await before.platform.release();
    // power cut: the board boots before DNS answers; a new agent process on the same state dir
    const after = board({ noIp6tables: true, stateDir: state.path, resolve: () => [] });
    await after.platform.quarantine({ controlPlaneHosts: ["plane.example.net"] });
    expect(after.exec.calls).toContain("iptables -A HASHWARD -d 192.0.2.10 -j ACCEPT");
    expect(after.exec.calls).toContain("iptables -A HASHWARD_IN -s 192.0.2.10 -j ACCEPT");
  });

  it("HW-Q-4: with no address known, the chains are rebuilt once the plane resolves (refresh while quarantined)", async () => {
    let answer: string[] = [];
    const { platform, exec, warnings } = board({ noIp6tables: true, resolve: (h) => (h === "plane.example.net" ? answer : []) });
    await platform.quarantine({ controlPlaneHosts: ["plane.example.net"] });
    expect(exec.calls.some((c) => c.includes("192.0.2.10"))).toBe(false);
    expect(warnings.some((w) => w.includes("plane.example.net does not resolve"))).toBe(true);
    expect(await platform.refreshQuarantine()).toBe(false); // still nothing: nothing to rebuild
    answer = ["192.0.2.10"];
    exec.calls.length = 0;
    expect(await platform.refreshQuarantine()).toBe(true);
    expect(exec.calls).toContain("iptables -A HASHWARD -d 192.0.2.10 -j ACCEPT");
    expect(exec.calls.some((c) => c.includes("bmminer.sh") || c.startsWith("mount"))).toBe(false); // only the firewall
    exec.calls.length = 0;
    expect(await platform.refreshQuarantine()).toBe(false); // unchanged: no churn
    expect(exec.calls).toEqual([]);
    await platform.release();
    answer = ["192.0.2.11"];
    expect(await platform.refreshQuarantine()).toBe(false); // released: the firewall is not rebuilt
  });

  it("HW-Q-4: the refresh runs on its own timer while quarantined", async () => {
    let answer: string[] = [];
    const { platform, exec } = board({ noIp6tables: true, refreshMs: 20, resolve: (h) => (h === "plane.example.net" ? answer : []) });
    await platform.quarantine({ controlPlaneHosts: ["plane.example.net"] });
    answer = ["192.0.2.10"];
    await waitFor("firewall rebuilt with the plane's address", () => exec.calls.includes("iptables -A HASHWARD -d 192.0.2.10 -j ACCEPT"));
  });

  it("ip6tables without a kernel IPv6 filter table: IPv6 skipped with a warning, the quarantine completes and the CGI is disabled", async () => {
    const { platform, exec, warnings } = board({ noIp6Table: true });
    await platform.quarantine({ controlPlaneHosts: ["plane.example.net"] });
    expect(exec.calls).toContain("iptables -I INPUT 1 -j HASHWARD_IN");
    expect(exec.calls.at(-1)).toBe("mount -o bind /dev/null /www/pages/cgi-bin/upgrade.cgi");
    expect(warnings.some((w) => w.includes("IPv6 firewall skipped"))).toBe(true);
  });

  it("a failing firewall still disables the upgrade CGI, then fails the quarantine", async () => {
    const { platform, exec } = board({ noIp6tables: true });
    exec.respond = (command, args) => (command === "iptables" && args[0] === "-A" ? { code: 4, stderr: "iptables: No chain/target/match by that name." } : undefined);
    await expect(platform.quarantine({ controlPlaneHosts: ["198.51.100.20"] })).rejects.toThrow(/exited 4/);
    expect(exec.calls.at(-1)).toBe("mount -o bind /dev/null /www/pages/cgi-bin/upgrade.cgi");
  });
});
