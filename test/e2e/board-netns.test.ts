/**
 * The Antminer platform executed for real (docs/board.md "Quarantine"; HW-Q-2, HW-Q-1): the compiled agent with
 * `"platform": {"kind": "antminer"}` runs inside a network and mount namespace, started by the real init script
 * `scripts/board/S99hashward` under `busybox ash`; a stand-in bmminer is started and stopped by a BusyBox init
 * script the way Bitmain's is; the firewall is real iptables/ip6tables (nft and legacy backends, each in its own
 * namespaces), the upgrade CGI is really bind-mounted over. Every claim is checked with real packets from inside
 * the board to listeners elsewhere (test/support/board-netns.ts draws the topology). The test plays the plane
 * with signed commands (test/support/fake-plane.ts), re-sending an unacked command as the real plane does.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signObject } from "../../shared/crypto/index.js";
import { downTopic } from "../../shared/protocol/index.js";
import { BUSYBOX, boardNamespaceSkipReason, createBoardNamespace, type BoardNamespace, type IptablesBackend, type ProbeTarget } from "../support/board-netns.js";
import { startFakePlane, type FakePlane } from "../support/fake-plane.js";
import { REPO_ROOT, requireAgentBinary, writeAgentConfig } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

const INIT_SCRIPT = join(REPO_ROOT, "scripts/board/S99hashward");
const CGI = "/www/pages/cgi-bin/upgrade.cgi";
const CGI_TEXT = "#!/bin/busybox ash\necho upgrade accepted\n";

/**
 * The board's files under `root`: Bitmain-style BusyBox init script and miner, the upgrade CGI, resolv.conf,
 * and iptables wrappers that pass straight through to the chosen backend unless a test arms their gate (then
 * the Nth call blocks until the test says `go` or `die`, so an agent can be killed mid-quarantine).
 */
function writeBoardRoot(root: string, backend: IptablesBackend, resolver: string, gate: string): void {
  for (const dir of ["etc/init.d", "usr/bin", "usr/sbin", "www/pages/cgi-bin", "var/run", "config"]) mkdirSync(join(root, dir), { recursive: true });
  const file = (path: string, text: string) => {
    writeFileSync(join(root, path), text);
    chmodSync(join(root, path), 0o755);
  };
  file("usr/bin/bmminer", `#!${BUSYBOX} ash\n# stand-in miner: one long-lived process\nexec ${BUSYBOX} sleep 2147483647\n`);
  file(
    "etc/init.d/bmminer.sh",
    `#!${BUSYBOX} ash
# stand-in for Bitmain's /etc/init.d/bmminer.sh (start-stop-daemon, pidfile)
PIDFILE=${root}/var/run/bmminer.pid
case "$1" in
  start) ${BUSYBOX} start-stop-daemon -S -q -b -m -p "$PIDFILE" -x ${root}/usr/bin/bmminer -o ;;
  stop)
    [ -f "$PIDFILE" ] || exit 0
    pid=$(cat "$PIDFILE")
    kill "$pid" 2>/dev/null
    while kill -0 "$pid" 2>/dev/null; do ${BUSYBOX} usleep 50000; done
    rm -f "$PIDFILE" ;;
  *) echo "usage: $0 {start|stop}"; exit 1 ;;
esac
`,
  );
  file(CGI.slice(1), CGI_TEXT);
  writeFileSync(join(root, "etc/resolv.conf"), `nameserver ${resolver}\n`);
  for (const tool of ["iptables", "ip6tables"]) {
    file(
      `usr/sbin/${tool}`,
      `#!${BUSYBOX} ash
G=${gate}
if [ -f "$G" ]; then
  n=$(( $(cat "$G.count" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$G.count"
  if [ "$n" -ge "$(cat "$G")" ]; then
    rm -f "$G"; echo "$0 $*" > "$G.waiting"
    read -r verdict < "$G.fifo"
    [ "$verdict" = go ] || exit 137
  fi
fi
exec /usr/sbin/${tool}-${backend} "$@"
`,
    );
  }
}

/** iptables-save output without the lines that differ between two identical rule sets (dates, counters). */
const normalise = (save: string) =>
  save
    .split("\n")
    .filter((line) => line.trim() !== "" && !line.startsWith("#"))
    .map((line) => line.replace(/\[\d+:\d+\]/g, "[0:0]"))
    .join("\n");

const BACKENDS: IptablesBackend[] = ["nft", "legacy"];

for (const backend of BACKENDS) {
  const skip = boardNamespaceSkipReason(backend);
  const title = `Antminer platform in namespaces, iptables-${backend} (real packets, real init script under busybox ash)`;
  if (skip) {
    describe.skip(`${title}: skipped, ${skip}`, () => {
      it("needs namespaces", () => undefined);
    });
    continue;
  }

  // Real processes on a shared machine: every step waits on an observable condition, within generous bounds.
  describe(title, { timeout: 240_000 }, () => {
    let ns: BoardNamespace;
    let plane: FakePlane;
    let root: string;
    let deviceId: string;
    let gate: string;
    let baseline: { v4: string; v6: string };
    let baselineProbes: Record<string, string>;
    let quarantinedRules: { v4: string; v6: string };
    let seq = 0;
    const runDir = () => join(ns.dir, "run");
    const agentLog = () => join(ns.dir, "agent.log");

    const initEnv = () => ({
      HASHWARD_AGENT: requireAgentBinary(),
      HASHWARD_CONFIG: join(ns.dir, "agent.json"),
      HASHWARD_RUN_DIR: runDir(),
      HASHWARD_LOG: agentLog(),
      HASHWARD_RESTART_DELAY: "1",
    });
    const s99 = (action: "start" | "stop") => ns.run(BUSYBOX, ["ash", INIT_SCRIPT, action], initEnv());
    const rules = () => ({ v4: normalise(ns.run(`/usr/sbin/iptables-${backend}-save`, ["-t", "filter"])), v6: normalise(ns.run(`/usr/sbin/ip6tables-${backend}-save`, ["-t", "filter"])) });
    const minerPid = () => (existsSync(join(root, "var/run/bmminer.pid")) ? Number(readFileSync(join(root, "var/run/bmminer.pid"), "utf8")) : null);
    const alive = (pid: number | null) => pid !== null && existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
    const agentPid = () => Number(readFileSync(join(runDir(), "hashward-agent.child.pid"), "utf8"));
    const cgiMounts = () => ns.run("cat", ["/proc/self/mounts"]).split("\n").filter((line) => line.split(" ")[1] === join(root, CGI)).length;
    const acks = (n: number) => plane.received.filter((r) => r.topic.endsWith("/up/ack") && r.message?.seq === n);
    const hellos = () => plane.received.filter((r) => r.topic.endsWith("/up/hello")).length;

    const targets = (): ProbeTarget[] => {
      const [http, mqtt] = [new URL(plane.httpUrl), new URL(plane.mqttUrl)];
      return [
        { name: "plane-http", kind: "tcp", host: ns.planeIp, port: Number(http.port) },
        { name: "plane-mqtt", kind: "tcp", host: ns.planeIp, port: Number(mqtt.port) },
        { name: "pool", kind: "tcp", host: ns.addresses.pool, port: 3333 },
        { name: "other-host", kind: "tcp", host: ns.addresses.other, port: 80 },
        { name: "other-host-v6", kind: "tcp", host: ns.addresses.other6, port: 80 },
        { name: "dns-configured", kind: "udp", host: ns.addresses.resolver, port: 53 },
        { name: "dns-other", kind: "udp", host: ns.addresses.rogueResolver, port: 53 },
      ];
    };
    const QUARANTINED = { "plane-http": "answered", "plane-mqtt": "answered", pool: "silent", "other-host": "silent", "other-host-v6": "silent", "dns-configured": "answered", "dns-other": "silent" };

    function command(n: number, action: "quarantine" | "release") {
      const now = Date.now();
      return signObject({ v: 1, type: "command", deviceId, seq: n, issuedAt: now, expiresAt: now + 300_000, action, params: { reason: "test" } }, plane.commandKey.privateKey);
    }
    const send = (message: unknown) => plane.observer.publishAsync(downTopic(deviceId, "command"), JSON.stringify(message), { qos: 1 });
    async function execute(action: "quarantine" | "release"): Promise<number> {
      const n = ++seq;
      await send(command(n, action));
      const [ack] = await waitFor(`ack for ${action} seq ${n}`, () => acks(n).length > 0 && acks(n), { timeoutMs: 60_000 });
      expect(ack!.message).toMatchObject({ status: "done", action });
      return n;
    }

    beforeAll(async () => {
      ns = await createBoardNamespace();
      root = join(ns.dir, "root");
      gate = join(ns.dir, "gate");
      mkdirSync(runDir());
      writeBoardRoot(root, backend, ns.addresses.resolver, gate);
      plane = await startFakePlane({ expose: ns.exposePlane });
      // The board's own firewall before the agent: the miner API closed to the LAN (v4 and v6).
      for (const tool of ["iptables", "ip6tables"]) ns.run(`/usr/sbin/${tool}-${backend}`, ["-A", "INPUT", "-p", "tcp", "--dport", "4028", "-i", "lo", "-j", "ACCEPT"]);
      for (const tool of ["iptables", "ip6tables"]) ns.run(`/usr/sbin/${tool}-${backend}`, ["-A", "INPUT", "-p", "tcp", "--dport", "4028", "-j", "DROP"]);
      writeAgentConfig(ns.dir, {
        controlPlaneUrl: plane.httpUrl,
        mqttUrl: plane.mqttUrl,
        allowPlaintext: true, // a stand-in plane (test/support/fake-plane.ts) without TLS: HW-TLS-1 refuses http:// otherwise
        stateDir: join(ns.dir, "state"),
        model: "S19",
        firmwareVersion: "1.0.0",
        platform: { kind: "antminer", root, iptables: join(root, "usr/sbin/iptables"), ip6tables: join(root, "usr/sbin/ip6tables") },
        measure: { paths: ["/config"], includeAgentBinary: false },
        heartbeatIntervalMs: 1000,
        attestIntervalMs: 600_000,
        enrollPollMs: 300,
        reconnectMinMs: 100,
        reconnectMaxMs: 1000,
      });
      // Boot order: the miner first, the agent last (S99).
      ns.run(join(root, "etc/init.d/bmminer.sh"), ["start"]);
      await waitFor("stand-in miner running", () => alive(minerPid()));
      baseline = rules();
      s99("start");
      const hello = await waitFor("the agent's hello", () => plane.received.find((r) => r.topic.endsWith("/up/hello")), { timeoutMs: 90_000 });
      deviceId = hello.message.deviceId;
    }, 240_000);

    afterAll(async () => {
      if (ns) {
        try {
          s99("stop");
          ns.run(join(root, "etc/init.d/bmminer.sh"), ["stop"]);
        } catch {
          // the namespace goes anyway
        }
      }
      await plane?.close();
      await ns?.destroy();
    });

    it("before quarantine every host answers from the board", async () => {
      baselineProbes = await ns.probe(targets());
      expect(baselineProbes).toEqual(Object.fromEntries(Object.keys(QUARANTINED).map((k) => [k, "answered"])));
      expect(ns.run("cat", [join(root, CGI)])).toBe(CGI_TEXT);
    });

    it("quarantined: only the plane's ports and the configured resolver answer, the miner is gone, the CGI is empty and cannot run (HW-Q-2)", async () => {
      const miner = minerPid();
      expect(alive(miner)).toBe(true);
      await execute("quarantine");
      expect(await ns.probe(targets())).toEqual(QUARANTINED);
      expect(alive(miner)).toBe(false);
      expect(ns.run("cat", [join(root, CGI)])).toBe("");
      const ran = ns.tryRun(join(root, CGI), []);
      expect(ran.status).not.toBe(0);
      expect(ran.stdout).not.toContain("upgrade accepted");
      quarantinedRules = rules();
      expect(quarantinedRules.v4).toContain(":HASHWARD -");
      expect(quarantinedRules.v6).toContain(":HASHWARD_IN -");
      // the agent stays reachable through the firewall: its heartbeats still arrive
      const before = plane.received.length;
      await waitFor("a heartbeat through the quarantine firewall", () => plane.received.slice(before).some((r) => r.topic.endsWith("/up/heartbeat")));
    });

    it("quarantine applied twice leaves identical rules and one bind mount", async () => {
      await execute("quarantine");
      expect(rules()).toEqual(quarantinedRules);
      expect(cgiMounts()).toBe(1);
    });

    it("released: everything as before (iptables-save before equals after, the miner runs, the CGI is back)", async () => {
      await execute("release");
      expect(rules()).toEqual(baseline);
      expect(await ns.probe(targets())).toEqual(baselineProbes);
      await waitFor("miner started again", () => alive(minerPid()));
      expect(cgiMounts()).toBe(0);
      expect(ns.run(join(root, CGI), [])).toContain("upgrade accepted");
    });

    it("the agent killed in the middle of building the firewall: restarted by the init script, the re-sent command converges", async () => {
      execFileSync("mkfifo", [`${gate}.fifo`]);
      writeFileSync(gate, "6"); // block the 6th iptables call: the chains exist, half filled, not hooked yet
      const n = ++seq;
      const message = command(n, "quarantine");
      await send(message);
      await waitFor("the agent blocked mid-firewall", () => existsSync(`${gate}.waiting`), { timeoutMs: 60_000 });
      const killed = agentPid();
      const hellosBefore = hellos();
      process.kill(killed, "SIGKILL"); // the power cut, for the agent...
      writeFileSync(`${gate}.fifo`, "die\n"); // ...and for the iptables call it was running
      await waitFor("the supervisor restarted the agent", () => existsSync(join(runDir(), "hashward-agent.child.pid")) && agentPid() !== killed && hellos() > hellosBefore, { timeoutMs: 90_000 });
      expect(acks(n)).toHaveLength(0);
      // The plane re-sends an unacked command until it expires (HASHWARD_COMMAND_RETRY_MS).
      await send(message);
      const [ack] = await waitFor(`ack for seq ${n}`, () => acks(n).length > 0 && acks(n), { timeoutMs: 60_000 });
      expect(ack!.message).toMatchObject({ status: "done", action: "quarantine", containment: "quarantined" });
      expect(rules()).toEqual(quarantinedRules);
      expect(cgiMounts()).toBe(1);
      expect(alive(minerPid())).toBe(false);
      expect(await ns.probe(targets())).toEqual(QUARANTINED);
    });

    it("a reboot while quarantined: the restarted agent re-applies the quarantine before it connects (HW-Q-1)", async () => {
      s99("stop");
      // What a reboot undoes: the kernel's rules, the bind mount, and the miner that boot starts before S99.
      for (const tool of ["iptables", "ip6tables"]) {
        const bin = `/usr/sbin/${tool}-${backend}`;
        ns.run(bin, ["-D", "OUTPUT", "-j", "HASHWARD"]);
        ns.run(bin, ["-D", "INPUT", "-j", "HASHWARD_IN"]);
        for (const chain of ["HASHWARD", "HASHWARD_IN"]) {
          ns.run(bin, ["-F", chain]);
          ns.run(bin, ["-X", chain]);
        }
      }
      ns.run("umount", [join(root, CGI)]);
      expect(rules()).toEqual(baseline);
      ns.run(join(root, "etc/init.d/bmminer.sh"), ["start"]);
      await waitFor("miner started by boot", () => alive(minerPid()));
      const logStart = readFileSync(agentLog(), "utf8").length;
      const hellosBefore = hellos();
      s99("start");
      await waitFor("the agent connected again", () => hellos() > hellosBefore, { timeoutMs: 90_000 });
      const lines = readFileSync(agentLog(), "utf8").slice(logStart).split("\n").filter(Boolean).map((line) => {
        try {
          return JSON.parse(line) as { msg?: string };
        } catch {
          return {};
        }
      });
      const reapplied = lines.findIndex((l) => l.msg === "state is quarantined: re-applying quarantine before anything else");
      const connected = lines.findIndex((l) => l.msg === "mqtt connected");
      expect(reapplied).toBeGreaterThanOrEqual(0);
      expect(connected).toBeGreaterThan(reapplied);
      expect(rules()).toEqual(quarantinedRules);
      expect(alive(minerPid())).toBe(false);
      expect(cgiMounts()).toBe(1);
      expect(await ns.probe(targets())).toEqual(QUARANTINED);
    });
  });
}
