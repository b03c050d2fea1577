/**
 * `stratos appview backfill|status`: an AppView's network backfill and ingest state through its admin
 * routes (POST /admin/backfill, GET /admin/status; HTTP Basic auth).
 */
import { CliError, EXIT_OK, UsageError, command, urlOption, type OptionSpecs } from '../util/command.js'
import { note, println, table } from '../util/io.js'
import { basicAuth } from '../util/xrpc.js'

export const DEFAULT_APPVIEW_URL = 'http://127.0.0.1:2585'

const appviewOptions = {
  appview: { type: 'string', valueName: 'URL', description: 'the AppView', env: 'STRATOS_APPVIEW_URL', default: DEFAULT_APPVIEW_URL },
  'admin-password': {
    type: 'string',
    valueName: 'PASSWORD',
    description: 'the AppView admin password',
    env: ['STRATOS_ADMIN_PASSWORD', 'APPVIEW_ADMIN_PASSWORD'],
  },
  json: { type: 'boolean', description: 'print JSON' },
} as const satisfies OptionSpecs

interface BackfillStatus {
  state: string
  reposTotal: number
  reposDone: number
  reposFailed: number
  reposPending: number
  records: number
  recordsPerSec: number
  reposPerSec: number
  etaSeconds: number | null
  sources: { source: string; listed: boolean; finishedAt: string | null }[]
}

interface AdminStatus {
  ingest: Record<string, unknown> & { connected: boolean; eventsInFlight: number; cursors: Record<string, number | null> }
  backfill: BackfillStatus
  repoFetch: Record<string, unknown>
}

async function admin<T>(base: string, path: string, password: string | undefined, method = 'GET'): Promise<T> {
  if (password === undefined) throw new UsageError('the admin password is required: --admin-password or STRATOS_ADMIN_PASSWORD')
  let res: Response
  try {
    res = await fetch(`${base.replace(/\/+$/, '')}${path}`, { method, headers: { authorization: basicAuth(password) } })
  } catch (err) {
    throw new CliError(`cannot reach the AppView at ${base}: ${(err as Error).message}`)
  }
  const text = await res.text()
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    body = undefined
  }
  if (!res.ok) {
    const e = body as { error?: string; message?: string } | undefined
    throw new CliError(`${method} ${path} failed (${res.status}${e?.error ? ` ${e.error}` : ''}): ${e?.message ?? text.slice(0, 200)}`)
  }
  return body as T
}

function backfillLine(b: BackfillStatus): string {
  const eta = b.etaSeconds === null ? '?' : `${b.etaSeconds}s`
  return `backfill ${b.state}: ${b.reposDone}/${b.reposTotal} repos done, ${b.reposFailed} failed, ${b.records} records (${b.recordsPerSec}/s, ${b.reposPerSec} repos/s), ETA ${eta}`
}

export const appviewStatusCommand = command({
  name: 'appview status',
  summary: "An AppView's ingest and backfill state (cursors, events in flight, repos done / total, rate, ETA)",
  usage: 'appview status [options]',
  description: 'Reads GET /admin/status of the AppView (needs the admin password).',
  options: appviewOptions,
  positionals: { max: 0 },
  async run({ values, io }) {
    const base = urlOption('appview', values.appview)
    const s = await admin<AdminStatus>(base, '/admin/status', values['admin-password'])
    if (values.json) {
      await println(io.stdout, JSON.stringify(s))
      return EXIT_OK
    }
    await println(io.stdout, `ingest: ${s.ingest.connected ? 'connected' : 'not connected'}, ${s.ingest.eventsInFlight} events in flight`)
    const cursors = Object.entries(s.ingest.cursors)
    if (cursors.length > 0) await println(io.stdout, table(cursors.map(([src, seq]) => [src, seq === null ? '-' : String(seq)]), ['UPSTREAM', 'CURSOR']))
    await println(io.stdout, backfillLine(s.backfill))
    return EXIT_OK
  },
})

export const appviewBackfillCommand = command({
  name: 'appview backfill',
  summary: 'Backfill an AppView: every repo of its upstreams (listRepos), or one account with --did',
  usage: 'appview backfill [--did DID] [--wait] [options]',
  description: `
Without --did, asks the AppView to list every repo of its relay (or PDSes) again and index what it
lacks (POST /admin/backfill); with --wait, prints progress until it is done. With --did, fetches
and indexes that one account now.`,
  options: {
    did: { type: 'string', valueName: 'DID', description: 'backfill this account only' },
    wait: { type: 'boolean', description: 'wait for the network backfill to finish, printing progress' },
    ...appviewOptions,
  },
  positionals: { max: 0 },
  async run({ values, io }) {
    const base = urlOption('appview', values.appview)
    const password = values['admin-password']
    if (values.did !== undefined) {
      if (!values.did.startsWith('did:')) throw new UsageError(`not a DID: '${values.did}'`)
      const res = await admin<Record<string, unknown>>(base, `/admin/backfill?did=${encodeURIComponent(values.did)}`, password, 'POST')
      if (values.json) await println(io.stdout, JSON.stringify(res))
      else await println(io.stdout, `${values.did}: indexed`)
      return EXIT_OK
    }
    const res = await admin<{ started: boolean; status: BackfillStatus }>(base, '/admin/backfill', password, 'POST')
    if (!values.json) note(io, res.started ? 'backfill started' : 'a backfill is already running')
    let status = res.status
    if (values.wait) {
      for (;;) {
        const s = await admin<AdminStatus>(base, '/admin/status', password)
        status = s.backfill
        if (status.state === 'done' || status.state === 'idle') break
        if (!values.json) note(io, backfillLine(status))
        await new Promise((r) => setTimeout(r, 1000))
      }
    }
    if (values.json) await println(io.stdout, JSON.stringify(status))
    else await println(io.stdout, backfillLine(status))
    return EXIT_OK
  },
})
