/** A recording CommandExecutor for tests of AntminerPlatform and UBootSlots (never runs anything). */
import type { CommandExecutor, CommandResult } from "../antminer.js";

/** Records every command as one line (`command arg arg`); answers from `respond` (default: exit 0, no output). */
export class RecordingExecutor implements CommandExecutor {
  readonly calls: string[] = [];
  respond: (command: string, args: readonly string[]) => Partial<CommandResult> | undefined = () => undefined;

  async run(command: string, args: readonly string[]): Promise<CommandResult> {
    this.calls.push([command, ...args].join(" "));
    return { code: 0, stdout: "", stderr: "", ...this.respond(command, args) };
  }
}
