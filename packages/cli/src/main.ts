/**
 * The `stratos` command table and dispatcher. Every command module is loaded on demand, so `stratos
 * resolve` does not pay for loading the PDS client or a service.
 *
 * Adding a command is one line: `name: lazy('summary', () => import('...').then((m) => m.someCommand))`,
 * where the module exports a Runnable (see util/command.ts: `command({...})` builds one, with --help).
 * The services (`dev`, `plc`, `pds`, `relay`, `appview`) are in commands/serve.ts.
 */
import { readFileSync } from 'node:fs'
import { EXIT_OK, EXIT_USAGE, group, reportError, type Runnable } from './util/command.js'
import type { Io } from './util/io.js'

export interface CommandEntry {
  summary: string
  load(): Promise<Runnable>
}

/** A command whose module is imported only when it runs. */
export function lazy(summary: string, load: () => Promise<Runnable>): CommandEntry {
  return { summary, load }
}

/** A group (`stratos repo <sub>`) whose subcommands load together. */
function lazyGroup(name: string, summary: string, load: () => Promise<Record<string, Runnable>>): CommandEntry {
  return lazy(summary, async () => group(name, summary, await load()))
}

export const commands: Record<string, CommandEntry> = {
  dev: lazy('Start the local network: PLC, PDS, Relay, AppView and a labeler on ports N..N+4', () =>
    import('./commands/serve.js').then((m) => m.devCommand),
  ),
  plc: lazy('Start a did:plc directory from PLC_* environment variables', () => import('./commands/serve.js').then((m) => m.plcCommand)),
  pds: lazy('Start a PDS from PDS_* environment variables (no subcommand), or set one up: pds init|backup|restore|update', async () => {
    const [serve, ops] = await Promise.all([import('./commands/serve.js'), import('./commands/pds-ops.js')])
    const sub = group('pds', 'Start a PDS from PDS_* variables (no subcommand, or only options), or operate one', ops.pdsSubcommands)
    return {
      summary: sub.summary,
      run: (argv, io, path) => (argv.length === 0 || argv[0]!.startsWith('-') && argv[0] !== '--help' && argv[0] !== '-h' ? serve.pdsCommand.run(argv, io, path) : sub.run(argv, io, path)),
    }
  }),
  relay: lazy("Start a relay (no subcommand), or manage a relay's hosts: relay hosts|ban|unban", async () => {
    const [admin, serve] = await Promise.all([import('./commands/relay.js'), import('./commands/serve.js')])
    const hosts = group('relay', "Start a relay from RELAY_* environment variables (no subcommand), or manage a relay's hosts through its admin API", {
      hosts: admin.relayHostsCommand,
      ban: admin.relayBanCommand,
      unban: admin.relayUnbanCommand,
    })
    return {
      summary: hosts.summary,
      run: (argv, io, path) => (argv.length === 0 || argv[0]!.startsWith('-') && argv[0] !== '--help' && argv[0] !== '-h' ? serve.relayCommand.run(argv, io, path) : hosts.run(argv, io, path)),
    }
  }),
  appview: lazy("Start an AppView (no subcommand), or drive an AppView's backfill: appview backfill|status", async () => {
    const [admin, serve] = await Promise.all([import('./commands/appview.js'), import('./commands/serve.js')])
    const sub = group('appview', "Start an AppView from APPVIEW_* environment variables (no subcommand), or drive an AppView's backfill through its admin API", {
      backfill: admin.appviewBackfillCommand,
      status: admin.appviewStatusCommand,
    })
    return {
      summary: sub.summary,
      run: (argv, io, path) => (argv.length === 0 || argv[0]!.startsWith('-') && argv[0] !== '--help' && argv[0] !== '-h' ? serve.appviewCommand.run(argv, io, path) : sub.run(argv, io, path)),
    }
  }),
  labeler: lazy('Start a labeler (no subcommand), or set up its account: labeler init', async () => {
    const [label, serve] = await Promise.all([import('./commands/label.js'), import('./commands/serve.js')])
    const sub = group('labeler', 'Start a labeler from LABELER_* environment variables (no subcommand), or make an account a labeler', {
      init: label.labelerInitCommand,
    })
    return {
      summary: sub.summary,
      run: (argv, io, path) => (argv.length === 0 || argv[0]!.startsWith('-') && argv[0] !== '--help' && argv[0] !== '-h' ? serve.labelerCommand.run(argv, io, path) : sub.run(argv, io, path)),
    }
  }),
  label: lazyGroup('label', "Manage a labeler's labels and reports through its admin API", async () => {
    const m = await import('./commands/label.js')
    return { add: m.labelAddCommand, remove: m.labelRemoveCommand, list: m.labelListCommand, reports: m.labelReportsCommand }
  }),
  resolve: lazy('Resolve a handle, DID or at:// URI step by step: handle → DID → DID document → PDS → record', () =>
    import('./commands/resolve.js').then((m) => m.resolveCommand),
  ),
  firehose: lazy('Print a subscribeRepos stream as JSON lines (records decoded, optional verification)', () =>
    import('./commands/firehose.js').then((m) => m.firehoseCommand),
  ),
  repo: lazyGroup('repo', 'Export and inspect repositories (CAR files)', async () => ({
    export: (await import('./commands/repo-export.js')).repoExportCommand,
    inspect: (await import('./commands/repo-inspect.js')).repoInspectCommand,
  })),
  account: lazyGroup('account', "Manage a PDS's accounts through its admin API", async () => {
    const m = await import('./commands/account.js')
    return {
      create: m.accountCreateCommand,
      list: m.accountListCommand,
      takedown: m.accountTakedownCommand,
      delete: m.accountDeleteCommand,
      'reset-password': m.accountResetPasswordCommand,
    }
  }),
  invite: lazyGroup('invite', 'Create invite codes on a PDS', async () => ({
    create: (await import('./commands/account.js')).inviteCreateCommand,
  })),
}

export function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string }
    return pkg.version ?? '0.0.0'
  } catch {
    return '0.0.0'
  }
}

export function mainHelp(table: Record<string, CommandEntry> = commands): string {
  const width = Math.max(...Object.keys(table).map((k) => k.length))
  return `Usage: stratos <command> [options]

Stratos: AT Protocol network services (PDS, Relay, AppView, PLC) and tools to inspect and run them.

Commands:
${Object.entries(table)
  .map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  .join('\n')}

Run 'stratos <command> --help' for a command's options.

Environment (flags override it):
  STRATOS_PLC_URL          did:plc directory (default https://plc.directory)
  STRATOS_PDS_URL          PDS for account/invite commands (default http://127.0.0.1:2583)
  STRATOS_RELAY_URL        relay for relay commands (default http://127.0.0.1:2584)
  STRATOS_LABELER_URL      labeler for label commands (default http://127.0.0.1:2586)
  STRATOS_ADMIN_PASSWORD   admin password for account/invite/relay/label commands
  STRATOS_DEV=1            development network: loopback and private addresses allowed
  STRATOS_DATA_DIR         data directory of 'stratos dev' (default ./data)
  STRATOS_PORT_BASE        first port of 'stratos dev' (default 2582)
  STRATOS_DEBUG=1          print stack traces of unexpected errors

The services (plc, pds, relay, appview, labeler) read their own variables: PLC_*, PDS_*, RELAY_*, APPVIEW_*,\nLABELER_*, LOG_LEVEL.

Exit status: 0 success, 1 failure, 2 usage error.
`
}

/** Runs `stratos <argv>`; returns the exit code. */
export async function main(argv: string[], io: Io, table: Record<string, CommandEntry> = commands): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined) {
    io.stderr.write(mainHelp(table))
    return EXIT_USAGE
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    if (name === 'help' && rest[0] !== undefined && Object.hasOwn(table, rest[0])) {
      return main([rest[0], '--help'], io, table)
    }
    io.stdout.write(mainHelp(table))
    return EXIT_OK
  }
  if (name === '--version' || name === '-v') {
    io.stdout.write(`stratos ${version()}\n`)
    return EXIT_OK
  }
  const entry = Object.hasOwn(table, name) ? table[name] : undefined
  if (!entry) {
    io.stderr.write(`stratos: unknown command '${name}'\nRun 'stratos --help' for the list of commands.\n`)
    return EXIT_USAGE
  }
  let cmd: Runnable
  try {
    cmd = await entry.load()
  } catch (err) {
    return reportError(err, io, name)
  }
  return cmd.run(rest, io, [name])
}
