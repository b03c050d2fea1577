/**
 * `stratos account create|list|takedown|delete` and `stratos invite create`: a PDS's admin API
 * (HTTP Basic auth as `admin`), through the @atproto/api client.
 */
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { AtpAgent } from '@atproto/api'
import { isValidDid, isValidHandle } from '@stratos/core/syntax'
import { CliError, EXIT_OK, UsageError, command, intOption, urlOption, type OptionSpecs } from '../util/command.js'
import { note, println, table, write } from '../util/io.js'
import { XrpcCallError, basicAuth, fromAgentError } from '../util/xrpc.js'

export const DEFAULT_PDS_URL = 'http://127.0.0.1:2583'

export const pdsOptions = {
  pds: {
    type: 'string',
    valueName: 'URL',
    description: 'the PDS',
    env: 'STRATOS_PDS_URL',
    default: DEFAULT_PDS_URL,
  },
  'admin-password': {
    type: 'string',
    valueName: 'PASSWORD',
    description: 'the PDS admin password',
    env: ['STRATOS_ADMIN_PASSWORD', 'PDS_ADMIN_PASSWORD'],
  },
  json: { type: 'boolean', description: 'print JSON (one object per line for lists)' },
} as const satisfies OptionSpecs

interface PdsFlags {
  pds: string
  'admin-password'?: string | undefined
}

export class PdsAdmin {
  readonly service: string
  private readonly password: string | undefined
  private publicAgent?: AtpAgent
  private adminAgent?: AtpAgent

  constructor(flags: PdsFlags, env: Record<string, string | undefined> = {}) {
    this.service = urlOption('pds', flags.pds)
    this.password = flags['admin-password'] ?? devAdminPassword(this.service, env)
  }

  get hasPassword(): boolean {
    return this.password !== undefined
  }

  /** No credentials (createAccount, describeServer, resolveHandle, listRepos). */
  get public(): AtpAgent {
    this.publicAgent ??= new AtpAgent({ service: this.service })
    return this.publicAgent
  }

  /** Basic auth as admin. */
  get admin(): AtpAgent {
    if (this.password === undefined) {
      throw new UsageError('the admin password is required: --admin-password or STRATOS_ADMIN_PASSWORD')
    }
    if (!this.adminAgent) {
      this.adminAgent = new AtpAgent({ service: this.service })
      this.adminAgent.setHeader('authorization', basicAuth(this.password))
    }
    return this.adminAgent
  }

  /** Runs a call, turning client errors into one-line messages naming the PDS and method. */
  async call<T>(nsid: string, fn: () => Promise<{ data: T } | { success: boolean }>): Promise<T> {
    try {
      const res = await fn()
      return ('data' in res ? res.data : undefined) as T
    } catch (err) {
      throw fromAgentError(this.service, nsid, err)
    }
  }

  /** A DID given as a DID or a handle the PDS hosts. */
  async toDid(actor: string): Promise<string> {
    if (actor.startsWith('did:')) {
      if (!isValidDid(actor)) throw new UsageError(`not a valid DID: '${actor}'`)
      return actor
    }
    const handle = actor.replace(/^@/, '').toLowerCase()
    if (!isValidHandle(handle)) throw new UsageError(`not a valid handle or DID: '${actor}'`)
    try {
      const res = await this.call('com.atproto.identity.resolveHandle', () => this.public.com.atproto.identity.resolveHandle({ handle }))
      return res.did
    } catch (err) {
      // resolveHandle does not answer for taken-down or deactivated accounts (as the reference PDS does);
      // an admin still has to name them by handle, e.g. to lift a takedown: look the handle up in the
      // admin's account list instead
      if (!(err instanceof XrpcCallError) || err.status !== 400 || !this.hasPassword) throw err
      const did = await this.findDidByHandle(handle).catch(() => undefined)
      if (!did) throw err
      return did
    }
  }

  /** The DID of the account with this handle, among every repo the PDS lists (admin getAccountInfos). */
  async findDidByHandle(handle: string): Promise<string | undefined> {
    let cursor: string | undefined
    do {
      const page = await this.call('com.atproto.sync.listRepos', () => this.public.com.atproto.sync.listRepos({ limit: 500, cursor }))
      for (let i = 0; i < page.repos.length; i += 100) {
        const dids = page.repos.slice(i, i + 100).map((r) => r.did)
        const infos = await this.call('com.atproto.admin.getAccountInfos', () => this.admin.com.atproto.admin.getAccountInfos({ dids }))
        const found = infos.infos.find((info) => info.handle?.toLowerCase() === handle)
        if (found) return found.did
      }
      cursor = page.repos.length > 0 ? page.cursor : undefined
    } while (cursor)
    return undefined
  }
}

/**
 * The admin password of a local `stratos dev` network: for a PDS on a loopback address, read from
 * `<STRATOS_DATA_DIR or ./data>/dev-secrets.json` when that file exists.
 */
export function devAdminPassword(service: string, env: Record<string, string | undefined>): string | undefined {
  const host = new URL(service).hostname
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(host)) return undefined
  try {
    const file = path.join(env.STRATOS_DATA_DIR?.trim() || './data', 'dev-secrets.json')
    const secrets = JSON.parse(fs.readFileSync(file, 'utf8')) as { pdsAdminPassword?: unknown }
    return typeof secrets.pdsAdminPassword === 'string' ? secrets.pdsAdminPassword : undefined
  } catch {
    return undefined
  }
}

function generatePassword(): string {
  return randomBytes(18).toString('base64url')
}

export const accountCreateCommand = command({
  name: 'account create',
  summary: 'Create an account on a PDS (with an invite code made by the admin API when the PDS requires one)',
  usage: 'account create --handle HANDLE [--email EMAIL] [--password PASSWORD] [options]',
  description: `
Calls com.atproto.server.createAccount. A handle without a dot gets the PDS's first user domain
(alice → alice.test on a dev PDS). When the PDS requires invite codes and --invite-code is not given, one
is created with com.atproto.server.createInviteCode (needs the admin password). Without --password a
random password is generated and printed; without --email, <handle>@example.com is used.`,
  options: {
    handle: { type: 'string', valueName: 'HANDLE', description: 'the handle (required)' },
    email: { type: 'string', valueName: 'EMAIL', description: 'email address' },
    password: { type: 'string', valueName: 'PASSWORD', description: 'account password (default: generated)' },
    'invite-code': { type: 'string', valueName: 'CODE', description: 'invite code to use' },
    ...pdsOptions,
  },
  positionals: { max: 0 },
  examples: ['stratos account create --handle alice --admin-password secret', 'stratos account create --handle bob.example.com --email bob@example.com --password hunter22'],
  async run({ values, io }) {
    if (!values.handle) throw new UsageError('--handle is required')
    const pds = new PdsAdmin(values, io.env)
    let handle = values.handle.replace(/^@/, '').toLowerCase()
    const server = await pds.call('com.atproto.server.describeServer', () => pds.public.com.atproto.server.describeServer())
    if (!handle.includes('.')) {
      const domain = server.availableUserDomains[0]
      if (!domain) throw new UsageError(`the PDS offers no user domains: give a full handle, not '${handle}'`)
      handle = `${handle}${domain.startsWith('.') ? domain : `.${domain}`}`
    }
    if (!isValidHandle(handle)) throw new UsageError(`not a valid handle: '${handle}'`)

    let inviteCode = values['invite-code']
    if (!inviteCode && server.inviteCodeRequired) {
      if (!pds.hasPassword) {
        throw new UsageError('this PDS requires an invite code: pass --invite-code, or --admin-password to create one')
      }
      const res = await pds.call('com.atproto.server.createInviteCode', () =>
        pds.admin.com.atproto.server.createInviteCode({ useCount: 1 }),
      )
      inviteCode = res.code
      note(io, `created invite code ${inviteCode}`)
    }
    const generated = values.password === undefined
    const password = values.password ?? generatePassword()
    const email = values.email ?? `${handle}@example.com`
    if (!values.email) note(io, `no --email given: using ${email}`)
    const created = await pds.call('com.atproto.server.createAccount', () =>
      pds.public.com.atproto.server.createAccount({ handle, email, password, ...(inviteCode ? { inviteCode } : {}) }),
    )
    if (values.json) {
      await println(
        io.stdout,
        JSON.stringify({ did: created.did, handle: created.handle, email, ...(generated ? { password } : {}), pds: pds.service }),
      )
    } else {
      await println(io.stdout, `did       ${created.did}`)
      await println(io.stdout, `handle    ${created.handle}`)
      await println(io.stdout, `email     ${email}`)
      if (generated) await println(io.stdout, `password  ${password}`)
    }
    return EXIT_OK
  },
})

interface ListedAccount {
  did: string
  handle?: string
  email?: string
  status: string
  createdAt?: string
  deactivatedAt?: string
  rev?: string
}

export const accountListCommand = command({
  name: 'account list',
  summary: 'List the accounts of a PDS (listRepos + admin getAccountInfos)',
  usage: 'account list [--search TEXT] [options]',
  description: `
Pages through com.atproto.sync.listRepos (every repo the PDS hosts, with its status) and fills in handle,
email and creation time from com.atproto.admin.getAccountInfos, 100 accounts at a time. --search keeps
accounts whose DID, handle or email contains TEXT.`,
  options: {
    search: { type: 'string', valueName: 'TEXT', description: 'only accounts whose DID, handle or email contains TEXT' },
    limit: { type: 'string', valueName: 'N', description: 'stop after N accounts' },
    ...pdsOptions,
  },
  positionals: { max: 0 },
  async run({ values, io }) {
    const pds = new PdsAdmin(values, io.env)
    const limit = intOption('limit', values.limit, { min: 1 })
    const needle = values.search?.toLowerCase()
    const out: ListedAccount[] = []
    let cursor: string | undefined
    let seen = 0
    pages: do {
      const page = await pds.call('com.atproto.sync.listRepos', () => pds.public.com.atproto.sync.listRepos({ limit: 500, cursor }))
      seen += page.repos.length
      for (let i = 0; i < page.repos.length; i += 100) {
        const batch = page.repos.slice(i, i + 100)
        const infos = await pds.call('com.atproto.admin.getAccountInfos', () =>
          pds.admin.com.atproto.admin.getAccountInfos({ dids: batch.map((r) => r.did) }),
        )
        const byDid = new Map(infos.infos.map((info) => [info.did, info]))
        for (const repo of batch) {
          const info = byDid.get(repo.did)
          const acct: ListedAccount = {
            did: repo.did,
            handle: info?.handle,
            email: info?.email,
            status: repo.active === false ? (repo.status ?? 'inactive') : 'active',
            createdAt: info?.indexedAt,
            deactivatedAt: info?.deactivatedAt,
            rev: repo.rev,
          }
          if (needle && ![acct.did, acct.handle, acct.email].some((f) => f?.toLowerCase().includes(needle))) continue
          out.push(acct)
          if (values.json) await write(io.stdout, `${JSON.stringify(acct)}\n`)
          if (limit !== undefined && out.length >= limit) break pages
        }
      }
      cursor = page.repos.length > 0 ? page.cursor : undefined
    } while (cursor)
    if (!values.json) {
      if (out.length > 0) {
        await println(
          io.stdout,
          table(
            out.map((a) => [a.did, a.handle ?? '-', a.email ?? '-', a.status, a.createdAt ?? '-']),
            ['DID', 'HANDLE', 'EMAIL', 'STATUS', 'CREATED'],
          ),
        )
      }
      note(io, `${out.length} account${out.length === 1 ? '' : 's'}${needle ? ` matching '${values.search}' (of ${seen})` : ''}`)
    }
    return EXIT_OK
  },
})

export const accountTakedownCommand = command({
  name: 'account takedown',
  summary: 'Take an account down (or restore it with --reverse) via com.atproto.admin.updateSubjectStatus',
  usage: 'account takedown <did|handle> [--ref REF] [--reverse] [options]',
  options: {
    ref: { type: 'string', valueName: 'REF', description: 'a reference to store with the takedown (e.g. a ticket id)' },
    reverse: { type: 'boolean', description: 'lift the takedown' },
    ...pdsOptions,
  },
  positionals: { min: 1, max: 1 },
  async run({ values, positionals, io }) {
    const pds = new PdsAdmin(values, io.env)
    const did = await pds.toDid(positionals[0]!)
    const takedown = { applied: !values.reverse, ...(values.ref ? { ref: values.ref } : {}) }
    const res = await pds.call('com.atproto.admin.updateSubjectStatus', () =>
      pds.admin.com.atproto.admin.updateSubjectStatus({
        subject: { $type: 'com.atproto.admin.defs#repoRef', did },
        takedown,
      }),
    )
    const applied = res.takedown?.applied ?? takedown.applied
    if (values.json) await println(io.stdout, JSON.stringify({ did, takedown: res.takedown ?? takedown }))
    else await println(io.stdout, `${did}: ${applied ? 'taken down' : 'restored'}${values.ref ? ` (ref ${values.ref})` : ''}`)
    return EXIT_OK
  },
})

export const accountDeleteCommand = command({
  name: 'account delete',
  summary: 'Delete an account and its data via com.atproto.admin.deleteAccount',
  usage: 'account delete <did|handle> [--yes] [options]',
  description: `
Deletes the account, its repo and blobs on the PDS. Asks for confirmation on a terminal; otherwise (scripts)
--yes is required.`,
  options: {
    yes: { type: 'boolean', short: 'y', description: 'do not ask for confirmation' },
    ...pdsOptions,
  },
  positionals: { min: 1, max: 1 },
  async run({ values, positionals, io }) {
    const pds = new PdsAdmin(values, io.env)
    void pds.admin // the password is needed: fail before asking anything
    const did = await pds.toDid(positionals[0]!)
    if (!values.yes) {
      if (!io.confirm) throw new UsageError('refusing to delete without --yes (no terminal to confirm on)')
      const ok = await io.confirm(`Delete ${did}${did !== positionals[0] ? ` (${positionals[0]})` : ''} and all its data on ${pds.service}?`)
      if (!ok) throw new CliError('not deleted')
    }
    await pds.call('com.atproto.admin.deleteAccount', () => pds.admin.com.atproto.admin.deleteAccount({ did }))
    if (values.json) await println(io.stdout, JSON.stringify({ did, deleted: true }))
    else await println(io.stdout, `${did}: deleted`)
    return EXIT_OK
  },
})

export const accountResetPasswordCommand = command({
  name: 'account reset-password',
  summary: "Set a new password for an account (com.atproto.admin.updateAccountPassword), printed once",
  usage: 'account reset-password <did|handle> [--password PASSWORD] [options]',
  description: 'Without --password a random password is generated. The account\'s sessions stay valid until they expire.',
  options: {
    password: { type: 'string', valueName: 'PASSWORD', description: 'the new password (default: generated)' },
    ...pdsOptions,
  },
  positionals: { min: 1, max: 1 },
  async run({ values, positionals, io }) {
    const pds = new PdsAdmin(values, io.env)
    void pds.admin // the password is needed: fail before resolving anything
    const did = await pds.toDid(positionals[0]!)
    const password = values.password ?? generatePassword()
    await pds.call('com.atproto.admin.updateAccountPassword', () => pds.admin.com.atproto.admin.updateAccountPassword({ did, password }))
    if (values.json) await println(io.stdout, JSON.stringify({ did, password }))
    else await println(io.stdout, `${did}: new password ${password}`)
    return EXIT_OK
  },
})

export const inviteCreateCommand = command({
  name: 'invite create',
  summary: 'Create invite codes (com.atproto.server.createInviteCode / createInviteCodes)',
  usage: 'invite create [--count N] [--uses N] [--for DID] [options]',
  description: 'Prints the codes, one a line (with --json, one object a line: {"code", "account"}).',
  options: {
    count: { type: 'string', valueName: 'N', description: 'how many codes (per account with --for)', default: '1' },
    uses: { type: 'string', valueName: 'N', description: 'how many accounts each code can create', default: '1' },
    for: { type: 'string', multiple: true, valueName: 'DID', description: 'create the codes for this account (repeatable)' },
    ...pdsOptions,
  },
  positionals: { max: 0 },
  async run({ values, io }) {
    const pds = new PdsAdmin(values, io.env)
    const count = intOption('count', values.count, { min: 1, max: 1000 })!
    const uses = intOption('uses', values.uses, { min: 1 })!
    for (const d of values.for) if (!isValidDid(d)) throw new UsageError(`--for is not a DID: '${d}'`)
    const codes: { code: string; account?: string }[] = []
    if (count === 1 && values.for.length <= 1) {
      const res = await pds.call('com.atproto.server.createInviteCode', () =>
        pds.admin.com.atproto.server.createInviteCode({ useCount: uses, ...(values.for[0] ? { forAccount: values.for[0] } : {}) }),
      )
      codes.push({ code: res.code, ...(values.for[0] ? { account: values.for[0] } : {}) })
    } else {
      const res = await pds.call('com.atproto.server.createInviteCodes', () =>
        pds.admin.com.atproto.server.createInviteCodes({
          codeCount: count,
          useCount: uses,
          ...(values.for.length > 0 ? { forAccounts: values.for } : {}),
        }),
      )
      for (const acct of res.codes) for (const code of acct.codes) codes.push({ code, account: acct.account })
    }
    for (const c of codes) await println(io.stdout, values.json ? JSON.stringify(c) : c.code)
    return EXIT_OK
  },
})

