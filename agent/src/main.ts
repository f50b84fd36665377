#!/usr/bin/env bun
/** Entry point of `hashward-agent`: parses the command line and wires the folders together. Nothing else. */
import { ConfigError } from "../../shared/index.js";
import { parseCli, USAGE, UsageError } from "./cli/index.js";
import { loadAgentConfig } from "./config/index.js";
import { createLogger } from "./log/index.js";
import { measure } from "./measure/index.js";
import { createPlatform } from "./platform/index.js";
import { Agent, EXIT, installProcessHandlers } from "./runtime/index.js";
import { runTufCli } from "./tuf-cli/index.js";
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
    case "tuf":
      return runTufCli(cli.args, { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) });
    case "measure": {
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
