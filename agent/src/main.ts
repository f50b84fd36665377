#!/usr/bin/env bun
/**
 * Entry point of `hashward-agent`: parses the command line and wires the folders together. Nothing else.
 * Each command's modules are imported when that command runs: `measure` and `version` do not load the
 * MQTT session, the guards or the update path, and a running agent does not load the TUF command-line client.
 * The specifiers are string literals, so `bun build --compile` bundles every one of them into the binary.
 */
import { ConfigError } from "../../shared/errors/index.js";
import { EXIT, parseCli, USAGE, UsageError } from "./cli/index.js";
import { AGENT_VERSION } from "./version/index.js";

async function main(argv: string[]): Promise<number> {
  const cli = parseCli(argv);
  switch (cli.name) {
    case "help":
      process.stdout.write(USAGE);
      return EXIT.ok;
    case "version":
      process.stdout.write(`hashward-agent ${AGENT_VERSION}\n`);
      return EXIT.ok;
    case "tuf": {
      const { runTufCli } = await import("./tuf-cli/index.js");
      return runTufCli(cli.args, { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) });
    }
    case "measure": {
      const [{ loadAgentConfig }, { measure }, { createPlatform }] = await Promise.all([import("./config/index.js"), import("./measure/index.js"), import("./platform/index.js")]);
      const config = loadAgentConfig(cli.configFile);
      const platform = createPlatform(config);
      const { measurements } = await measure(config.measure.paths, {
        resolve: (p) => platform.resolve(p),
        includeAgentBinary: config.measure.includeAgentBinary,
      });
      process.stdout.write(`${JSON.stringify(measurements, null, 2)}\n`);
      return EXIT.ok;
    }
    case "run": {
      const [{ loadAgentConfig }, { createLogger }, { Agent, installProcessHandlers }] = await Promise.all([import("./config/index.js"), import("./log/index.js"), import("./runtime/index.js")]);
      const config = loadAgentConfig(cli.configFile);
      const log = createLogger(config.logLevel);
      installProcessHandlers(log);
      const agent = new Agent(config, { log });
      const stop = (signal: string) => {
        log.info({ signal }, "stopping");
        void agent.stop(EXIT.ok);
      };
      process.once("SIGTERM", () => stop("SIGTERM"));
      process.once("SIGINT", () => stop("SIGINT"));
      log.info({ deviceId: agent.deviceId, version: AGENT_VERSION, platform: agent.platform.describe() }, "hashward-agent starting");
      await agent.start();
      return agent.exited;
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`hashward-agent: ${error.message}\n\n${USAGE}`);
      process.exit(EXIT.usage);
    }
    if (error instanceof ConfigError) {
      process.stderr.write(`hashward-agent: config error: ${error.message}\n`);
      process.exit(EXIT.usage);
    }
    process.stderr.write(`hashward-agent: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(EXIT.failure);
  },
);
