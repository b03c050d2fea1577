/** @stratos/cli as a library: the command table (to add service commands) and the pieces commands share. */
export { main, commands, lazy, mainHelp, version, type CommandEntry } from './main.js'
export {
  command,
  group,
  CliError,
  UsageError,
  EXIT_OK,
  EXIT_FAILURE,
  EXIT_USAGE,
  type CommandSpec,
  type OptionSpec,
  type Runnable,
} from './util/command.js'
export type { Io, OutStream } from './util/io.js'
export { formatEvent, firehoseUrl, StreamVerifier } from './commands/firehose.js'
