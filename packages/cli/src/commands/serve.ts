/**
 * `stratos dev` (the whole network in one process) and `stratos plc|pds|relay|appview` (one service from its
 * environment variables, as its Docker image starts it). Both run until SIGINT/SIGTERM and then shut down cleanly.
 */
import { CliError, UsageError, command } from '../util/command.js'
import { note, println, type Io } from '../util/io.js'

interface Closable {
  close(): Promise<void>
}

/** Resolves when the command's abort signal fires (SIGINT/SIGTERM), or never without one. */
function untilStopped(io: Io): Promise<void> {
  return new Promise((resolve) => {
    if (!io.signal) return
    if (io.signal.aborted) return resolve()
    io.signal.addEventListener('abort', () => resolve(), { once: true })
  })
}

async function runUntilStopped(io: Io, name: string, server: Closable): Promise<number> {
  await untilStopped(io)
  note(io, `${name}: shutting down`)
  await server.close()
  return 0
}

/**
 * A config reader's error (each service throws a ConfigError naming the bad variables, e.g. "invalid PDS
 * configuration: PDS_PORT must be ...") becomes a clean exit 1 with that message after `stratos <service>:`.
 */
function readConfigOrFail<T>(read: () => T): T {
  try {
    return read()
  } catch (err) {
    if (err instanceof Error && err.name === 'ConfigError') throw new CliError(err.message)
    throw err
  }
}

function exampleText(urls: { plc: string; pds: string; relay: string; appview: string }): string {
  return `
Try it (creates an account and a post on the local PDS):

  curl -s -X POST ${urls.pds}/xrpc/com.atproto.server.createAccount \\
    -H 'content-type: application/json' \\
    -d '{"handle":"alice.test","email":"alice@example.com","password":"hunter22"}'

  node --input-type=module -e "
    import { AtpAgent } from '@atproto/api'
    const agent = new AtpAgent({ service: '${urls.pds}' })
    await agent.login({ identifier: 'alice.test', password: 'hunter22' })
    console.log(await agent.post({ text: 'hello from stratos', createdAt: new Date().toISOString() }))
    console.log((await agent.getTimeline()).data.feed.length, 'posts in the timeline (via the AppView)')
  "

A whole app (sign-up, a post with an image, a follow, the timeline, the relay's firehose), from the
repository root:

  STRATOS_PDS_URL=${urls.pds} STRATOS_PLC_URL=${urls.plc} STRATOS_RELAY_URL=${urls.relay} node examples/quickstart.mjs
`
}

export const devCommand = command({
  name: 'dev',
  summary: 'Start the local network: PLC on port N, PDS on N+1, Relay on N+2, AppView on N+3, labeler on N+4',
  usage: 'dev [--data-dir DIR] [--port-base N] [--json]',
  description: `
Starts the five services in one process, wired together: the PDS hosts *.test handles, registers its
accounts' DIDs with the PLC directory, asks the relay to crawl it and proxies app.bsky.* to the AppView;
the AppView follows the relay and the labeler, whose account labeler.test is set up as by
'stratos labeler init'. Data (SQLite, blobs, generated
dev secrets) lives under --data-dir and survives a restart. Ctrl-C stops the network cleanly.`,
  options: {
    'data-dir': { type: 'string', valueName: 'DIR', description: 'where the services keep their data', env: 'STRATOS_DATA_DIR', default: './data' },
    'port-base': { type: 'string', valueName: 'N', description: 'first port (PLC); PDS N+1, Relay N+2, AppView N+3, labeler N+4', env: 'STRATOS_PORT_BASE', default: '2582' },
    json: { type: 'boolean', description: 'print one line {"plc","pds","relay","appview","labeler"} once every service answers /xrpc/_health' },
    'log-level': { type: 'string', valueName: 'LEVEL', description: 'log level of every service (JSON lines on stdout unless --json)', default: 'warn' },
  },
  positionals: { max: 0 },
  examples: ['pnpm start', 'stratos dev --data-dir /tmp/net --port-base 3000 --json'],
  async run({ values, io }) {
    const portBase = Number(values['port-base'])
    if (!Number.isInteger(portBase) || portBase < 1 || portBase > 65531) {
      throw new UsageError(`--port-base must be an integer between 1 and 65531, got '${values['port-base']}'`)
    }
    const { startDevNetwork, waitForHealth } = await import('@stratos/dev-network')
    if (!values.json) note(io, `starting PLC, PDS, Relay, AppView and labeler on ports ${portBase}..${portBase + 4} (data in ${values['data-dir']})`)
    // with --json, stdout carries only the URL line: services log to stderr-free silence unless asked
    const logLevel = values.json && values['log-level'] === 'warn' ? 'silent' : values['log-level']
    const network = await startDevNetwork({ dataDir: values['data-dir'], portBase, logLevel, labeler: true })
    try {
      await waitForHealth(network.urls)
    } catch (err) {
      await network.close()
      throw new CliError((err as Error).message)
    }
    if (values.json) {
      await println(io.stdout, JSON.stringify(network.urls))
    } else {
      const { urls, secrets } = network
      await println(
        io.stdout,
        `Stratos dev network is up:
  PLC      ${urls.plc}
  PDS      ${urls.pds}   (admin password: ${secrets.pdsAdminPassword})
  Relay    ${urls.relay}   (admin password: ${secrets.relayAdminPassword}; firehose ${urls.relay.replace(/^http/, 'ws')}/xrpc/com.atproto.sync.subscribeRepos)
  AppView  ${urls.appview}
  Labeler  ${urls.labeler}   (admin password: ${secrets.labelerAdminPassword}; account ${network.labelerDid ?? ''}, label with 'stratos label add <did|at-uri> <value> --labeler ${urls.labeler} --admin-password ${secrets.labelerAdminPassword}')
${exampleText(urls)}
Press Ctrl-C to stop.`,
      )
    }
    return runUntilStopped(io, 'dev network', network)
  },
})

function serviceCommand(name: 'plc' | 'pds' | 'relay' | 'appview' | 'labeler', summary: string, envPrefix: string, start: (env: Record<string, string | undefined>) => Promise<Closable & { url: string }>) {
  return command({
    name,
    summary,
    usage: name,
    description: `
Configured by ${envPrefix}* environment variables (see services/${name}/README.md); a bad value stops
start-up with a message naming the variable. Logs JSON lines; SIGINT/SIGTERM shut it down cleanly.`,
    options: {},
    positionals: { max: 0 },
    async run({ io }) {
      const server = await start(io.env)
      note(io, `${name} listening on ${server.url}`)
      return runUntilStopped(io, name, server)
    },
  })
}

export const plcCommand = serviceCommand('plc', 'Start a did:plc directory from PLC_* environment variables', 'PLC_', async (env) => {
  const { PlcServer, readConfig } = await import('@stratos/plc')
  const server = await PlcServer.create(readConfigOrFail(() => readConfig(env)))
  await server.start()
  return server
})

export const pdsCommand = command({
  name: 'pds',
  summary: 'Start a PDS from PDS_* environment variables',
  usage: 'pds [--env-file FILE]',
  description: `
Configured by PDS_* environment variables (see the Configuration table in README.md), or an env file
written by \`stratos pds init\` (variables set in the environment win over the file). A bad value stops
start-up with a message naming the variable; outside dev mode missing, short or published sample secrets
are refused. Logs JSON lines; SIGINT/SIGTERM shut it down cleanly.
Subcommands: pds init | backup | restore | update (stratos pds <subcommand> --help).`,
  options: {
    'env-file': { type: 'string', valueName: 'FILE', description: 'read PDS_* variables from this file', env: 'STRATOS_PDS_ENV_FILE' },
  },
  positionals: { max: 0 },
  async run({ values, io }) {
    const { loadEnvFile } = await import('./pds-init.js')
    const env = values['env-file'] ? loadEnvFile(values['env-file'], io.env) : io.env
    const { PdsServer, readConfigFromEnv } = await import('@stratos/pds')
    const cfg = readConfigOrFail(() => readConfigFromEnv(env))
    const server = await PdsServer.create(cfg)
    await server.start()
    note(io, `pds listening on ${server.url}`)
    return runUntilStopped(io, 'pds', server)
  },
})

export const relayCommand = serviceCommand('relay', 'Start a relay from RELAY_* environment variables', 'RELAY_', async (env) => {
  const { RelayServer, readConfig } = await import('@stratos/relay')
  const server = await RelayServer.create(readConfigOrFail(() => readConfig(env)))
  await server.start()
  return server
})

export const appviewCommand = serviceCommand('appview', 'Start an AppView from APPVIEW_* environment variables', 'APPVIEW_', async (env) => {
  const { AppViewServer, readConfig } = await import('@stratos/appview')
  const server = await AppViewServer.create(readConfigOrFail(() => readConfig(env)))
  await server.start()
  return server
})

export const labelerCommand = serviceCommand('labeler', 'Start a labeler from LABELER_* environment variables', 'LABELER_', async (env) => {
  const { LabelerServer, readConfig } = await import('@stratos/labeler')
  const server = await LabelerServer.create(readConfigOrFail(() => readConfig(env)))
  await server.start()
  return server
})
