/**
 * `stratos label add|remove|list|reports`: a labeler's labels and reports through its admin API
 * (com.stratos.labeler.admin.*, HTTP Basic auth), and `stratos labeler init`: an account on a PDS made a
 * labeler (its app.bsky.labeler.service record, and its DID document's #atproto_label key and
 * #atproto_labeler service through the PDS's PLC operation flow).
 */
import { readFileSync } from 'node:fs'
import { EXIT_OK, UsageError, command, intOption, urlOption, type OptionSpecs } from '../util/command.js'
import { note, println, table, write } from '../util/io.js'
import { basicAuth, fromAgentError, xrpcJson } from '../util/xrpc.js'

export const DEFAULT_LABELER_URL = 'http://127.0.0.1:2586'
export const LABELER_CREATE_LABEL = 'com.stratos.labeler.admin.createLabel'
export const LABELER_NEGATE_LABEL = 'com.stratos.labeler.admin.negateLabel'
export const LABELER_LIST_LABELS = 'com.stratos.labeler.admin.listLabels'
export const LABELER_LIST_REPORTS = 'com.stratos.labeler.admin.listReports'

const labelerOptions = {
  labeler: { type: 'string', valueName: 'URL', description: 'the labeler', env: 'STRATOS_LABELER_URL', default: DEFAULT_LABELER_URL },
  'admin-password': {
    type: 'string',
    valueName: 'PASSWORD',
    description: 'the labeler admin password',
    env: ['STRATOS_ADMIN_PASSWORD', 'LABELER_ADMIN_PASSWORD'],
  },
  json: { type: 'boolean', description: 'print JSON (one object per line for lists)' },
} as const satisfies OptionSpecs

function adminHeaders(password: string | undefined): Record<string, string> {
  if (password === undefined) throw new UsageError('the admin password is required: --admin-password or STRATOS_ADMIN_PASSWORD')
  return { authorization: basicAuth(password) }
}

/** A label subject: a DID or an at:// URI of a record. */
function subject(input: string): string {
  const s = input.trim()
  if (/^did:[a-z]+:\S+$/.test(s) || /^at:\/\/did:[a-z]+:[^/\s]+\/[^/\s]+\/[^/\s]+$/.test(s)) return s
  throw new UsageError(`a label subject is a DID or an at://<did>/<collection>/<rkey> URI, got '${input}'`)
}

interface LabelView {
  seq: number
  label: { uri: string; val: string; cid?: string; neg?: boolean; cts: string; exp?: string; src: string }
}

const cell = (v: unknown) => (v === undefined || v === null || v === '' ? '-' : String(v))

export const labelAddCommand = command({
  name: 'label add',
  summary: 'Label an account (DID) or a record (at:// URI): the labeler signs and publishes it',
  usage: 'label add <did|at-uri> <value> [--exp DATETIME] [--cid CID] [options]',
  description: `Calls ${LABELER_CREATE_LABEL}. A label already on the subject with this value is replaced.`,
  options: {
    exp: { type: 'string', valueName: 'DATETIME', description: 'when the label stops applying (ISO 8601, e.g. 2030-01-01T00:00:00Z)' },
    cid: { type: 'string', valueName: 'CID', description: 'only this version of the record' },
    ...labelerOptions,
  },
  positionals: { min: 2, max: 2 },
  examples: ['stratos label add at://did:plc:abc/app.bsky.feed.post/3k... porn', 'stratos label add did:plc:abc !hide --exp 2030-01-01T00:00:00Z'],
  async run({ values, positionals, io }) {
    const labeler = urlOption('labeler', values.labeler)
    const uri = subject(positionals[0]!)
    const val = positionals[1]!
    let exp: string | undefined
    if (values.exp !== undefined) {
      const t = Date.parse(values.exp)
      if (Number.isNaN(t)) throw new UsageError(`--exp must be a date and time, got '${values.exp}'`)
      exp = new Date(t).toISOString()
    }
    const body: Record<string, string> = { uri, val }
    if (exp) body.exp = exp
    if (values.cid) body.cid = values.cid
    const res = await xrpcJson<LabelView>(labeler, LABELER_CREATE_LABEL, { body, headers: adminHeaders(values['admin-password']) })
    if (values.json) await println(io.stdout, JSON.stringify(res))
    else await println(io.stdout, `labeled ${uri} ${val} (seq ${res.seq}${exp ? `, expires ${exp}` : ''})`)
    return EXIT_OK
  },
})

export const labelRemoveCommand = command({
  name: 'label remove',
  summary: 'Withdraw a label: the labeler publishes a negation (neg: true)',
  usage: 'label remove <did|at-uri> <value> [options]',
  description: `Calls ${LABELER_NEGATE_LABEL}.`,
  options: labelerOptions,
  positionals: { min: 2, max: 2 },
  async run({ values, positionals, io }) {
    const labeler = urlOption('labeler', values.labeler)
    const uri = subject(positionals[0]!)
    const val = positionals[1]!
    const res = await xrpcJson<LabelView>(labeler, LABELER_NEGATE_LABEL, { body: { uri, val }, headers: adminHeaders(values['admin-password']) })
    if (values.json) await println(io.stdout, JSON.stringify(res))
    else await println(io.stdout, `removed ${val} from ${uri} (negation, seq ${res.seq})`)
    return EXIT_OK
  },
})

export const labelListCommand = command({
  name: 'label list',
  summary: 'List the labels a labeler has published (negations and expired ones too)',
  usage: 'label list [--uri SUBJECT|PREFIX*] [--val VALUE] [options]',
  description: `Pages through ${LABELER_LIST_LABELS}, oldest first.`,
  options: {
    uri: { type: 'string', valueName: 'SUBJECT', description: 'only this subject, or subjects starting with a prefix ending in *' },
    val: { type: 'string', valueName: 'VALUE', description: 'only this label value' },
    limit: { type: 'string', valueName: 'N', description: 'stop after N labels' },
    ...labelerOptions,
  },
  positionals: { max: 0 },
  async run({ values, io }) {
    const labeler = urlOption('labeler', values.labeler)
    const limit = intOption('limit', values.limit, { min: 1 })
    const headers = adminHeaders(values['admin-password'])
    const labels: LabelView[] = []
    let cursor: string | undefined
    pages: do {
      const page = await xrpcJson<{ labels?: LabelView[]; cursor?: string }>(labeler, LABELER_LIST_LABELS, {
        params: { limit: 1000, cursor, uri: values.uri, val: values.val },
        headers,
      })
      const list = Array.isArray(page.labels) ? page.labels : []
      for (const l of list) {
        labels.push(l)
        if (values.json) await write(io.stdout, `${JSON.stringify(l)}\n`)
        if (limit !== undefined && labels.length >= limit) break pages
      }
      cursor = list.length > 0 && typeof page.cursor === 'string' ? page.cursor : undefined
    } while (cursor)
    if (!values.json) {
      if (labels.length > 0) {
        const rows = labels.map((l) => [String(l.seq), l.label.uri, l.label.val, l.label.neg ? 'negated' : 'active', l.label.cts, cell(l.label.exp)])
        await println(io.stdout, table(rows, ['SEQ', 'SUBJECT', 'VALUE', 'STATE', 'CREATED', 'EXPIRES']))
      }
      note(io, `${labels.length} label${labels.length === 1 ? '' : 's'}`)
    }
    return EXIT_OK
  },
})

interface ReportView {
  id: number
  reasonType: string
  reason?: string
  subject: { did?: string; uri?: string }
  reportedBy: string
  createdAt: string
}

export const labelReportsCommand = command({
  name: 'label reports',
  summary: 'List the moderation reports a labeler received (com.atproto.moderation.createReport), newest first',
  usage: 'label reports [--subject SUBJECT] [options]',
  description: `Pages through ${LABELER_LIST_REPORTS}.`,
  options: {
    subject: { type: 'string', valueName: 'SUBJECT', description: 'only reports about this DID or at:// URI' },
    limit: { type: 'string', valueName: 'N', description: 'stop after N reports' },
    ...labelerOptions,
  },
  positionals: { max: 0 },
  async run({ values, io }) {
    const labeler = urlOption('labeler', values.labeler)
    const limit = intOption('limit', values.limit, { min: 1 })
    const headers = adminHeaders(values['admin-password'])
    const reports: ReportView[] = []
    let cursor: string | undefined
    pages: do {
      const page = await xrpcJson<{ reports?: ReportView[]; cursor?: string }>(labeler, LABELER_LIST_REPORTS, {
        params: { limit: 1000, cursor, subject: values.subject },
        headers,
      })
      const list = Array.isArray(page.reports) ? page.reports : []
      for (const r of list) {
        reports.push(r)
        if (values.json) await write(io.stdout, `${JSON.stringify(r)}\n`)
        if (limit !== undefined && reports.length >= limit) break pages
      }
      cursor = list.length > 0 && typeof page.cursor === 'string' ? page.cursor : undefined
    } while (cursor)
    if (!values.json) {
      if (reports.length > 0) {
        const rows = reports.map((r) => [
          String(r.id),
          r.createdAt,
          r.reasonType.replace(/^com\.atproto\.moderation\.defs#/, ''),
          cell(r.subject.uri ?? r.subject.did),
          r.reportedBy,
          cell(r.reason),
        ])
        await println(io.stdout, table(rows, ['ID', 'CREATED', 'REASON', 'SUBJECT', 'REPORTED BY', 'TEXT']))
      }
      note(io, `${reports.length} report${reports.length === 1 ? '' : 's'}`)
    }
    return EXIT_OK
  },
})

export const labelerInitCommand = command({
  name: 'labeler init',
  summary: 'Make an account on a PDS a labeler: its service record and its DID document (#atproto_label, #atproto_labeler)',
  usage: 'labeler init --identifier HANDLE --password PASSWORD --labeler-url URL [options]',
  description: `
Logs in to the account on its PDS and:
  1. writes its app.bsky.labeler.service record (rkey self): the label values it publishes and their
     definitions (--policies FILE: an app.bsky.labeler.defs#labelerPolicies object; default: the global
     values !hide, !warn, porn, sexual, nudity, graphic-media and two of its own, spam and misleading);
  2. adds the labeler's signing key (#atproto_label) and URL (#atproto_labeler) to the account's DID
     document through the PDS: the PDS emails a confirmation code, then run again with --token CODE.
     Skipped when the document already has both.
Without --signing-key-hex a new key is generated and printed: give it to the labeler as
LABELER_SIGNING_KEY_K256_PRIVATE_KEY_HEX (and to the second run with --signing-key-hex).`,
  options: {
    pds: { type: 'string', valueName: 'URL', description: "the account's PDS", env: 'STRATOS_PDS_URL', default: 'http://127.0.0.1:2583' },
    identifier: { type: 'string', valueName: 'HANDLE', description: "the labeler account's handle or DID" },
    password: { type: 'string', valueName: 'PASSWORD', description: "the account's password", env: 'STRATOS_LABELER_ACCOUNT_PASSWORD' },
    'labeler-url': { type: 'string', valueName: 'URL', description: 'where the labeler serves (its #atproto_labeler endpoint)', env: 'LABELER_PUBLIC_URL' },
    'signing-key-hex': {
      type: 'string',
      valueName: 'HEX',
      description: "the labeler's k256 private key (64 hex characters)",
      env: 'LABELER_SIGNING_KEY_K256_PRIVATE_KEY_HEX',
    },
    policies: { type: 'string', valueName: 'FILE', description: 'JSON file with the labelerPolicies (labelValues, labelValueDefinitions)' },
    token: { type: 'string', valueName: 'CODE', description: 'the confirmation code the PDS emailed' },
    plc: { type: 'string', valueName: 'URL', description: 'PLC directory (to skip step 2 when already done)', env: 'STRATOS_PLC_URL' },
    json: { type: 'boolean', description: 'print the result as JSON' },
  },
  positionals: { max: 0 },
  examples: [
    'stratos labeler init --identifier mod.example.com --password … --labeler-url https://mod.example.com',
    'stratos labeler init --identifier mod.example.com --password … --labeler-url https://mod.example.com --signing-key-hex … --token ABCDE-12345',
  ],
  async run({ values, io }) {
    const pds = urlOption('pds', values.pds)
    if (!values.identifier) throw new UsageError('--identifier is required: the labeler account')
    if (!values.password) throw new UsageError('--password is required (or STRATOS_LABELER_ACCOUNT_PASSWORD)')
    if (!values['labeler-url']) throw new UsageError('--labeler-url is required: where the labeler serves')
    const labelerUrl = urlOption('labeler-url', values['labeler-url']).replace(/\/+$/, '')
    const { generateKeypair, importKeypair } = await import('@stratos/core/crypto')
    const hex = values['signing-key-hex']
    if (hex !== undefined && !/^[0-9a-fA-F]{64}$/.test(hex)) throw new UsageError('--signing-key-hex must be 64 hex characters')
    const key = hex ? await importKeypair(hex, 'k256') : await generateKeypair('k256')
    const keyHex = Buffer.from(key.export()).toString('hex')
    let policies: unknown
    if (values.policies) {
      try {
        policies = JSON.parse(readFileSync(values.policies, 'utf8'))
      } catch (err) {
        throw new UsageError(`--policies: cannot read ${values.policies} as JSON (${(err as Error).message})`)
      }
      if (typeof policies !== 'object' || policies === null || !Array.isArray((policies as { labelValues?: unknown }).labelValues)) {
        throw new UsageError('--policies: expected an object with a labelValues array')
      }
    }
    const { initLabeler } = await import('@stratos/labeler')
    let result
    try {
      result = await initLabeler({
        pdsUrl: pds,
        identifier: values.identifier,
        password: values.password,
        labelerUrl,
        labelKey: key.did(),
        policies: policies as never,
        plcUrl: values.plc,
        token: values.token,
      })
    } catch (err) {
      throw fromAgentError(pds, 'labeler init', err)
    }
    if (values.json) {
      await println(io.stdout, JSON.stringify({ ...result, labelKey: key.did(), ...(hex ? {} : { signingKeyHex: keyHex }) }))
    } else {
      await println(io.stdout, `labeler account ${result.handle} (${result.did})`)
      await println(io.stdout, `service record  ${result.record}`)
      await println(
        io.stdout,
        `DID document    ${result.didDocumentUpdated ? `updated: #atproto_label ${key.did()}, #atproto_labeler ${labelerUrl}` : result.tokenRequested ? 'a confirmation code was emailed to the account: run again with --token CODE' : 'already up to date'}`,
      )
      await println(io.stdout, `\nLABELER_DID=${result.did}`)
      if (!hex) await println(io.stdout, `LABELER_SIGNING_KEY_K256_PRIVATE_KEY_HEX=${keyHex}`)
    }
    return EXIT_OK
  },
})
