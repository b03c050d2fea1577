/**
 * `stratos pds init`: the configuration of a PDS on the real network, written to an env file (mode 0600)
 * that both `stratos pds` and deploy/pds/compose.yaml read. Generates the secrets; asks for the host name
 * and the admin email on a terminal, or takes them as flags.
 */
import fs from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { CliError, UsageError, command, urlOption } from '../util/command.js'
import { note, println, type Io } from '../util/io.js'

/** The public network's services (what the reference PDS distribution configures). */
export const NETWORK_DEFAULTS = {
  plcUrl: 'https://plc.directory',
  appViewUrl: 'https://api.bsky.app',
  appViewDid: 'did:web:api.bsky.app',
  crawlers: 'https://bsky.network',
  reportServiceUrl: 'https://mod.bsky.app',
  reportServiceDid: 'did:plc:ar7c4by46qjdydhdevvrndac',
} as const

const HOSTNAME_RE = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$/

export function checkHostname(value: string): string {
  const host = value.trim().toLowerCase().replace(/\.$/, '')
  if (!HOSTNAME_RE.test(host)) {
    throw new UsageError(`'${value}' is not a host name like pds.example.com (no scheme, port or path)`)
  }
  if (/\.(test|local|localhost|invalid|example)$/.test(host) || host === 'localhost') {
    throw new UsageError(`'${host}' is a reserved name that cannot get a public certificate; use a domain you own`)
  }
  return host
}

function checkEmail(value: string): string {
  const email = value.trim()
  if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) throw new UsageError(`'${value}' is not an email address`)
  return email
}

/** A secp256k1 private key (hex) for the PLC rotation key: 32 random bytes below the curve order. */
export function generateRotationKeyHex(): string {
  const order = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
  for (;;) {
    const hex = randomBytes(32).toString('hex')
    const d = BigInt(`0x${hex}`)
    if (d > 0n && d < order) return hex
  }
}

export interface InitValues {
  hostname: string
  adminEmail: string
  dataDir: string
  port: string
  plcUrl: string
  appViewUrl: string
  appViewDid: string
  crawlers: string
  reportServiceUrl: string
  reportServiceDid: string
  inviteRequired: boolean
  smtpUrl?: string
  emailFrom?: string
}

/** The env file text; secrets are generated here. */
export function envFileText(v: InitValues): string {
  const lines: [string, string][] = [
    ['PDS_HOSTNAME', v.hostname],
    ['PDS_ADMIN_EMAIL', v.adminEmail],
    ['PDS_JWT_SECRET', randomBytes(32).toString('hex')],
    ['PDS_ADMIN_PASSWORD', randomBytes(16).toString('hex')],
    ['PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX', generateRotationKeyHex()],
    ['PDS_DATA_DIRECTORY', v.dataDir],
    ['PDS_BLOBSTORE_DISK_LOCATION', path.posix.join(v.dataDir, 'blocks')],
    ['PDS_PORT', v.port],
    ['PDS_DID_PLC_URL', v.plcUrl],
    ['PDS_BSKY_APP_VIEW_URL', v.appViewUrl],
    ['PDS_BSKY_APP_VIEW_DID', v.appViewDid],
    ['PDS_REPORT_SERVICE_URL', v.reportServiceUrl],
    ['PDS_REPORT_SERVICE_DID', v.reportServiceDid],
    ['PDS_CRAWLERS', v.crawlers],
    ['PDS_INVITE_REQUIRED', String(v.inviteRequired)],
    ['PDS_RATE_LIMITS_ENABLED', 'true'],
    ['LOG_LEVEL', 'info'],
  ]
  if (v.smtpUrl && v.emailFrom) lines.push(['PDS_EMAIL_SMTP_URL', v.smtpUrl], ['PDS_EMAIL_FROM_ADDRESS', v.emailFrom])
  return [
    `# Stratos PDS for ${v.hostname}, written by \`stratos pds init\` on ${new Date().toISOString()}.`,
    '# Keep this file secret (mode 0600) and back it up: the rotation key controls every account\'s DID.',
    ...lines.map(([k, val]) => `${k}=${val}`),
    '',
  ].join('\n')
}

/** Caddy's env file (deploy/pds/compose.yaml): only what the Caddyfile reads, none of the PDS's secrets. */
export function caddyEnvFileText(hostname: string, adminEmail: string): string {
  return [
    `# Caddy in front of the Stratos PDS for ${hostname}, written by \`stratos pds init\` (no secrets here;`,
    '# keep PDS_HOSTNAME and PDS_ADMIN_EMAIL the same as in pds.env).',
    `PDS_HOSTNAME=${hostname}`,
    `PDS_ADMIN_EMAIL=${adminEmail}`,
    '',
  ].join('\n')
}

export function dnsRecordsText(hostname: string): string {
  return `DNS records to create (at your DNS provider), pointing at this server's public addresses:

  ${hostname}      A     <IPv4 address of this server>
  ${hostname}      AAAA  <IPv6 address of this server, if it has one>
  *.${hostname}    A     <IPv4 address of this server>
  *.${hostname}    AAAA  <IPv6 address of this server, if it has one>

The wildcard gives every account a handle like alice.${hostname}; Caddy gets a certificate for each
handle on first use, after asking the PDS (GET /tls-check?domain=) that the handle exists.
Ports 80 and 443 must be reachable from the internet.`
}

async function askFor(io: Io, question: string, current: string | undefined, check: (v: string) => string): Promise<string> {
  if (current !== undefined) return check(current)
  if (!io.ask) throw new UsageError(`${question.replace(/[?:]\s*$/, '')}: no terminal to ask on, give it as a flag`)
  for (;;) {
    const answer = (await io.ask(`${question} `)).trim()
    try {
      return check(answer)
    } catch (err) {
      note(io, (err as Error).message)
    }
  }
}

export const pdsInitCommand = command({
  name: 'pds init',
  summary: 'Write the configuration of a PDS on the public network (env file with generated secrets, mode 0600)',
  usage: 'pds init [FILE] [--hostname HOST] [--admin-email EMAIL] [options]',
  description: `
Writes FILE (default pds.env). Asks for the PDS's host name and the admin's email (or takes --hostname
and --admin-email), generates the JWT secret, the admin password and the PLC rotation key, and writes everything to the env file (mode
0600) with the public network's services: the PLC directory ${NETWORK_DEFAULTS.plcUrl}, the Bluesky AppView
${NETWORK_DEFAULTS.appViewUrl} (${NETWORK_DEFAULTS.appViewDid}), the relay ${NETWORK_DEFAULTS.crawlers} as crawler and
Bluesky's moderation service as report service. Then prints the DNS records to create.
Next to it, caddy.env holds what Caddy needs (host name, email; no secrets).
deploy/pds/compose.yaml reads the files as deploy/pds/pds.env and deploy/pds/caddy.env; \`stratos pds\` reads
pds.env with --env-file.`,
  options: {
    hostname: { type: 'string', valueName: 'HOST', description: 'public host name of the PDS, e.g. pds.example.com' },
    'admin-email': { type: 'string', valueName: 'EMAIL', description: "the operator's email (TLS certificate account, contact)" },
    'env-file': {
      type: 'string',
      valueName: 'FILE',
      description: 'the env file to write (= FILE; on Node 20 only for an existing file: node itself stops on --env-file with a missing file)',
    },
    'data-dir': { type: 'string', valueName: 'DIR', description: 'PDS_DATA_DIRECTORY as the PDS sees it (the image keeps its data volume at /data)', default: '/data' },
    port: { type: 'string', valueName: 'N', description: 'PDS_PORT (behind the TLS proxy)', default: '2583' },
    'plc-url': { type: 'string', valueName: 'URL', description: 'did:plc directory', default: NETWORK_DEFAULTS.plcUrl },
    'appview-url': { type: 'string', valueName: 'URL', description: 'AppView for app.bsky.*', default: NETWORK_DEFAULTS.appViewUrl },
    'appview-did': { type: 'string', valueName: 'DID', description: "the AppView's service DID", default: NETWORK_DEFAULTS.appViewDid },
    crawlers: { type: 'string', valueName: 'URLS', description: 'relays asked to crawl this PDS (comma-separated)', default: NETWORK_DEFAULTS.crawlers },
    'report-service-url': { type: 'string', valueName: 'URL', description: 'moderation service for reports', default: NETWORK_DEFAULTS.reportServiceUrl },
    'report-service-did': { type: 'string', valueName: 'DID', description: "the report service's DID", default: NETWORK_DEFAULTS.reportServiceDid },
    'invite-required': { type: 'string', valueName: 'true|false', description: 'sign-up needs an invite code', default: 'true' },
    'smtp-url': { type: 'string', valueName: 'URL', description: 'smtps://user:pass@host:465 for account emails (optional)' },
    'email-from': { type: 'string', valueName: 'ADDRESS', description: 'From: address of account emails (with --smtp-url)' },
    force: { type: 'boolean', description: 'overwrite an existing env file (new secrets: every session ends)' },
  },
  positionals: { max: 1 },
  examples: ['stratos pds init', 'stratos pds init deploy/pds/pds.env --hostname pds.example.com --admin-email you@example.com'],
  async run({ values, positionals, io }) {
    if (positionals[0] && values['env-file'] && path.resolve(positionals[0]) !== path.resolve(values['env-file'])) {
      throw new UsageError('give the env file once: as FILE or as --env-file')
    }
    const file = path.resolve(positionals[0] ?? values['env-file'] ?? 'pds.env')
    if (fs.existsSync(file) && !values.force) {
      throw new CliError(`${file} exists; keep it (its secrets are in use) or pass --force to write new ones`)
    }
    const hostname = await askFor(io, 'Public host name of this PDS (e.g. pds.example.com):', values.hostname, checkHostname)
    const adminEmail = await askFor(io, "Admin email (for TLS certificates and contact):", values['admin-email'], checkEmail)
    if (!/^[0-9]+$/.test(values.port) || Number(values.port) < 1 || Number(values.port) > 65535) {
      throw new UsageError(`--port must be an integer between 1 and 65535, got '${values.port}'`)
    }
    const invite = values['invite-required'].toLowerCase()
    if (invite !== 'true' && invite !== 'false') throw new UsageError(`--invite-required must be true or false`)
    if (Boolean(values['smtp-url']) !== Boolean(values['email-from'])) throw new UsageError('--smtp-url and --email-from go together')
    const crawlers = values.crawlers
      .split(',')
      .map((c) => c.trim())
      .filter(Boolean)
      .map((c) => urlOption('crawlers', c, ['https:']))
    for (const did of [values['appview-did'], values['report-service-did']]) {
      if (!/^did:[a-z]+:\S+$/.test(did)) throw new UsageError(`not a DID: '${did}'`)
    }
    const text = envFileText({
      hostname,
      adminEmail,
      dataDir: values['data-dir'],
      port: values.port,
      plcUrl: urlOption('plc-url', values['plc-url'], ['https:']),
      appViewUrl: urlOption('appview-url', values['appview-url'], ['https:']),
      appViewDid: values['appview-did'],
      crawlers: crawlers.join(','),
      reportServiceUrl: urlOption('report-service-url', values['report-service-url'], ['https:']),
      reportServiceDid: values['report-service-did'],
      inviteRequired: invite === 'true',
      smtpUrl: values['smtp-url'],
      emailFrom: values['email-from'],
    })
    fs.mkdirSync(path.dirname(file), { recursive: true })
    // created 0600 (never readable by others, not even for a moment), and kept 0600 when overwritten
    fs.rmSync(file, { force: true })
    fs.writeFileSync(file, text, { mode: 0o600, flag: 'wx' })
    fs.chmodSync(file, 0o600)
    note(io, `wrote ${file} (mode 0600): host ${hostname}, secrets generated`)
    // what Caddy needs (deploy/pds/compose.yaml gives its container this file, not the secrets above)
    const caddyFile = path.join(path.dirname(file), 'caddy.env')
    fs.writeFileSync(caddyFile, caddyEnvFileText(hostname, adminEmail), { mode: 0o644 })
    note(io, `wrote ${caddyFile}: Caddy's settings (host name, email), no secrets`)
    await println(io.stdout, dnsRecordsText(hostname))
    return 0
  },
})

/** Parses an env file (KEY=value lines, # comments, optional quotes) as docker compose and systemd read it. */
export function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {}
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const eq = line.indexOf('=')
    if (eq <= 0) continue
    const key = line.slice(0, eq).trim().replace(/^export\s+/, '')
    let value = line.slice(eq + 1).trim()
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0])) value = value.slice(1, -1)
    env[key] = value
  }
  return env
}

/** Reads an env file into an environment (the process's own variables win, as with docker compose). */
export function loadEnvFile(file: string, env: Record<string, string | undefined>): Record<string, string | undefined> {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new CliError(`cannot read env file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  return { ...parseEnvFile(text), ...env }
}
