/**
 * `stratos relay hosts|ban|unban`: a relay's hosts (public com.atproto.sync.listHosts, or the relay's
 * admin listHosts) and host bans through its admin lexicons (com.stratos.relay.admin.*, HTTP Basic auth).
 */
import { EXIT_OK, UsageError, command, intOption, urlOption, type OptionSpecs } from '../util/command.js'
import { note, println, table, write } from '../util/io.js'
import { basicAuth, xrpcJson } from '../util/xrpc.js'

export const DEFAULT_RELAY_URL = 'http://127.0.0.1:2584'
export const RELAY_ADMIN_LIST_HOSTS = 'com.stratos.relay.admin.listHosts'
export const RELAY_ADMIN_BAN_HOST = 'com.stratos.relay.admin.banHost'
export const RELAY_ADMIN_UNBAN_HOST = 'com.stratos.relay.admin.unbanHost'

const relayOptions = {
  relay: { type: 'string', valueName: 'URL', description: 'the relay', env: 'STRATOS_RELAY_URL', default: DEFAULT_RELAY_URL },
  'admin-password': {
    type: 'string',
    valueName: 'PASSWORD',
    description: 'the relay admin password',
    env: ['STRATOS_ADMIN_PASSWORD', 'RELAY_ADMIN_PASSWORD'],
  },
  json: { type: 'boolean', description: 'print JSON (one object per line for lists)' },
} as const satisfies OptionSpecs

function adminHeaders(password: string | undefined): Record<string, string> {
  if (password === undefined) throw new UsageError('the admin password is required: --admin-password or STRATOS_ADMIN_PASSWORD')
  return { authorization: basicAuth(password) }
}

/** A hostname as the relay stores it: no scheme, no path (a pasted URL is reduced to its host[:port]). */
export function normalizeHostname(input: string): string {
  let host = input.trim().toLowerCase()
  if (/^[a-z]+:\/\//.test(host)) {
    try {
      host = new URL(host).host
    } catch {
      throw new UsageError(`not a hostname: '${input}'`)
    }
  }
  host = host.replace(/\/+$/, '')
  if (!/^[a-z0-9.-]+(:\d{1,5})?$/.test(host) || host.startsWith('.') || host.endsWith('.')) {
    throw new UsageError(`not a hostname: '${input}'`)
  }
  return host
}

type HostRow = Record<string, unknown> & { hostname: string }

export const relayHostsCommand = command({
  name: 'relay hosts',
  summary: "List a relay's hosts (PDSes it crawls), with status, account count and last seq",
  usage: 'relay hosts [--admin] [options]',
  description: `
Pages through com.atproto.sync.listHosts (public). With --admin, asks the relay's admin API
(${RELAY_ADMIN_LIST_HOSTS}) instead, which also lists banned and idle hosts.`,
  options: {
    admin: { type: 'boolean', description: `use ${RELAY_ADMIN_LIST_HOSTS} (needs the admin password)` },
    limit: { type: 'string', valueName: 'N', description: 'stop after N hosts' },
    ...relayOptions,
  },
  positionals: { max: 0 },
  async run({ values, io }) {
    const relay = urlOption('relay', values.relay)
    const limit = intOption('limit', values.limit, { min: 1 })
    const nsid = values.admin ? RELAY_ADMIN_LIST_HOSTS : 'com.atproto.sync.listHosts'
    const headers = values.admin ? adminHeaders(values['admin-password']) : {}
    const hosts: HostRow[] = []
    let cursor: string | undefined
    pages: do {
      const page = await xrpcJson<{ hosts?: unknown; cursor?: string }>(relay, nsid, {
        params: { limit: 1000, cursor },
        headers,
      })
      const list = Array.isArray(page.hosts) ? (page.hosts as HostRow[]).filter((h) => h && typeof h.hostname === 'string') : []
      for (const h of list) {
        hosts.push(h)
        if (values.json) await write(io.stdout, `${JSON.stringify(h)}\n`)
        if (limit !== undefined && hosts.length >= limit) break pages
      }
      cursor = list.length > 0 && typeof page.cursor === 'string' ? page.cursor : undefined
    } while (cursor)
    if (!values.json) {
      const cell = (v: unknown) => (v === undefined || v === null ? '-' : String(v))
      if (hosts.length > 0) {
        const rows = values.admin
          ? hosts.map((h) => [h.hostname, cell(h.status), cell(h.trusted), cell(h.accountCount), cell(h.seq), cell(h.addedBy), cell(h.lastEventAt)])
          : hosts.map((h) => [h.hostname, cell(h.status), cell(h.accountCount), cell(h.seq)])
        const header = values.admin
          ? ['HOSTNAME', 'STATUS', 'TRUSTED', 'ACCOUNTS', 'SEQ', 'ADDED BY', 'LAST EVENT']
          : ['HOSTNAME', 'STATUS', 'ACCOUNTS', 'SEQ']
        await println(io.stdout, table(rows, header))
      }
      note(io, `${hosts.length} host${hosts.length === 1 ? '' : 's'}`)
    }
    return EXIT_OK
  },
})

function banCommand(ban: boolean) {
  const nsid = ban ? RELAY_ADMIN_BAN_HOST : RELAY_ADMIN_UNBAN_HOST
  return command({
    name: ban ? 'relay ban' : 'relay unban',
    summary: ban
      ? 'Ban a host: the relay disconnects it and refuses to crawl it again'
      : 'Lift a host ban (the host may be crawled again)',
    usage: `relay ${ban ? 'ban' : 'unban'} <hostname> [options]`,
    description: `Calls ${nsid} with {"hostname": …}.`,
    options: relayOptions,
    positionals: { min: 1, max: 1 },
    async run({ values, positionals, io }) {
      const relay = urlOption('relay', values.relay)
      const hostname = normalizeHostname(positionals[0]!)
      const headers = adminHeaders(values['admin-password'])
      const res = await xrpcJson(relay, nsid, { method: 'POST', body: { hostname }, headers })
      if (values.json) await println(io.stdout, JSON.stringify({ hostname, banned: ban, ...res }))
      else await println(io.stdout, `${hostname}: ${ban ? 'banned' : 'unbanned'}`)
      return EXIT_OK
    },
  })
}

export const relayBanCommand = banCommand(true)
export const relayUnbanCommand = banCommand(false)
