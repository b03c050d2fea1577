import { randomBytes } from 'node:crypto'
import type SqliteDatabase from 'better-sqlite3'
import { ChangeCheckedCache } from '../util/change-checked-cache.js'
import type { Kysely } from 'kysely'
import { importKeypair, type Curve, type SigningKeypair } from '@stratos/core/crypto'
import { AuthRequiredError, InvalidRequestError } from '../errors.js'
import type { AccountDbSchema, AccountTable } from './db.js'
import {
  APP_PASSWORD_REGEX,
  generateAppPassword,
  hashAppPassword,
  hashPassword,
  MAX_PASSWORD_LENGTH,
  verifyPassword,
} from './password.js'
import { AuthScope, newTokenId, type SessionTokens } from './tokens.js'
import { KeyVault } from './key-vault.js'

const PLAIN_VAULT = new KeyVault(null)

export type AccountStatus = 'takendown' | 'suspended' | 'deleted' | 'deactivated'

export interface Account {
  did: string
  handle: string | null
  email: string | null
  emailConfirmedAt: string | null
  createdAt: string
  deactivatedAt: string | null
  deleteAfter: string | null
  takedownRef: string | null
  invitesDisabled: boolean
}

export interface AppPasswordDescript {
  name: string
  privileged: boolean
}

export interface SessionTokensOut {
  accessJwt: string
  refreshJwt: string
}

export const accountStatus = (a: Pick<Account, 'takedownRef' | 'deactivatedAt'>): {
  active: boolean
  status?: AccountStatus
} => {
  if (a.takedownRef) return { active: false, status: 'takendown' }
  if (a.deactivatedAt) return { active: false, status: 'deactivated' }
  return { active: true }
}

export const scopeFor = (appPassword: AppPasswordDescript | null): AuthScope =>
  !appPassword ? AuthScope.Access : appPassword.privileged ? AuthScope.AppPassPrivileged : AuthScope.AppPass

/** How long a spent refresh token stays on record to recognise its reuse. */
/** A scrypt hash of a random password: unknown accounts are checked against it, to take the same time. */
const DUMMY_PASSWORD_HASH = `${randomBytes(16).toString('hex')}:${randomBytes(64).toString('hex')}`

/** Account rows {@link AccountManager} keeps between writes (emptied when full). */
const MAX_CACHED_ROWS = 10_000

const SPENT_TOKEN_RETENTION_MS = 7 * 24 * 60 * 60 * 1000

const toAccount = (row: AccountTable): Account => ({
  did: row.did,
  handle: row.handle,
  email: row.email,
  emailConfirmedAt: row.emailConfirmedAt,
  createdAt: row.createdAt,
  deactivatedAt: row.deactivatedAt,
  deleteAfter: row.deleteAfter,
  takedownRef: row.takedownRef,
  invitesDisabled: row.invitesDisabled === 1,
})

interface PendingRoot {
  cid: string
  rev: string
  at: string
}

export class AccountManager {
  /** prepared statements for the per-request paths (account lookup, repo head), when on SQLite */
  private readonly hot: {
    byDid: SqliteDatabase.Statement<[string], AccountTable>
    byHandle: SqliteDatabase.Statement<[string], AccountTable>
    setRoot: SqliteDatabase.Statement<[string, string, string, string]>
    tx: SqliteDatabase.Transaction<(roots: Map<string, PendingRoot>) => void>
  } | null

  /**
   * Account rows read by {@link getAccount} (key: DID, or `@` + handle; null: no such account): every write to
   * the service database goes through this one connection (Kysely's and the hot statements alike). The head
   * updates of the write path ({@link flushRepoRoots}) touch repo_root only and leave them valid.
   */
  private readonly rows: ChangeCheckedCache<AccountTable | null> | null

  constructor(
    readonly db: Kysely<AccountDbSchema>,
    private readonly tokens: SessionTokens,
    private readonly opts: { refreshGraceMs: number; hostname: string; vault?: KeyVault; sqlite?: SqliteDatabase.Database },
  ) {
    const s = opts.sqlite
    this.hot = s
      ? {
          byDid: s.prepare('SELECT * FROM account WHERE did = ?'),
          byHandle: s.prepare('SELECT * FROM account WHERE handle = ?'),
          // an update, not an upsert: a head noted for an account deleted before the flush adds no row
          setRoot: s.prepare('UPDATE repo_root SET cid = ?, rev = ?, indexedAt = ? WHERE did = ?'),
          tx: s.transaction((roots: Map<string, PendingRoot>) => {
            for (const [did, r] of roots) this.hot!.setRoot.run(r.cid, r.rev, r.at, did)
          }),
        }
      : null
    this.rows = s ? new ChangeCheckedCache(s, MAX_CACHED_ROWS) : null
  }

  /**
   * Repo heads noted by the write path ({@link updateRepoRootSync}), written together in one transaction at
   * the end of the event-loop turn (a write is acknowledged later, after its fsyncs); every reader of
   * repo_root writes them first.
   */
  private pendingRoots = new Map<string, PendingRoot>()
  private rootsScheduled = false

  /** Writes the repo heads noted since the last flush (one transaction). */
  flushRepoRoots(): void {
    if (this.pendingRoots.size === 0 || !this.hot) return
    const roots = this.pendingRoots
    this.pendingRoots = new Map()
    // repo_root rows only: cached account rows stay valid across this write (unless already stale)
    try {
      this.rows!.unaffectedBy(() => this.hot!.tx(roots))
    } catch (err) {
      // kept for the next flush (unless a newer head came meanwhile); a head never written is found
      // behind the account's store at start-up (PdsServer's recovery)
      for (const [did, r] of roots) if (!this.pendingRoots.has(did)) this.pendingRoots.set(did, r)
      throw err
    }
  }

  private get vault(): KeyVault {
    return this.opts.vault ?? PLAIN_VAULT
  }

  // accounts
  // -------

  async getAccount(
    handleOrDid: string,
    opts: { includeDeactivated?: boolean; includeTakenDown?: boolean } = {},
  ): Promise<Account | null> {
    const isDid = handleOrDid.startsWith('did:')
    if (this.hot) {
      const row = this.accountRow(isDid ? handleOrDid : `@${handleOrDid.toLowerCase()}`)
      if (!row) return null
      if (row.takedownRef && !opts.includeTakenDown) return null
      if (row.deactivatedAt && !opts.includeDeactivated) return null
      return toAccount(row)
    }
    const row = await this.db
      .selectFrom('account')
      .selectAll()
      .where(isDid ? 'did' : 'handle', '=', isDid ? handleOrDid : handleOrDid.toLowerCase())
      .executeTakeFirst()
    if (!row) return null
    if (row.takedownRef && !opts.includeTakenDown) return null
    if (row.deactivatedAt && !opts.includeDeactivated) return null
    return toAccount(row)
  }

  /** The account row by DID or `@` + lowercased handle, through the row cache (see {@link rows}). */
  private accountRow(key: string): AccountTable | null {
    const hot = this.hot!
    return this.rows!.get(key, () => (key.startsWith('@') ? hot.byHandle.get(key.slice(1)) : hot.byDid.get(key)) ?? null)
  }

  /**
   * {@link getAccount} without a promise, for synchronous read paths; undefined when the service database is
   * not SQLite (the caller then takes its asynchronous path).
   */
  getAccountSync(handleOrDid: string, opts: { includeDeactivated?: boolean; includeTakenDown?: boolean } = {}): Account | null | undefined {
    if (!this.hot) return undefined
    const row = this.accountRow(handleOrDid.startsWith('did:') ? handleOrDid : `@${handleOrDid.toLowerCase()}`)
    if (!row) return null
    if (row.takedownRef && !opts.includeTakenDown) return null
    if (row.deactivatedAt && !opts.includeDeactivated) return null
    return toAccount(row)
  }

  async getAccountByEmail(email: string): Promise<Account | null> {
    const row = await this.db
      .selectFrom('account')
      .selectAll()
      .where((eb) => eb(eb.fn('lower', ['email']), '=', email.toLowerCase()))
      .executeTakeFirst()
    return row ? toAccount(row) : null
  }

  async isHandleTaken(handle: string): Promise<boolean> {
    const row = await this.db.selectFrom('account').select('did').where('handle', '=', handle).executeTakeFirst()
    return !!row
  }

  async isEmailTaken(email: string): Promise<boolean> {
    return !!(await this.getAccountByEmail(email))
  }

  /**
   * Inserts the account, its signing key and repo root in one transaction, consuming the invite code if
   * one is given (InvalidInviteCode when it is used up meanwhile).
   */
  async createAccount(opts: {
    did: string
    handle: string
    email: string | null
    password: string | null
    signingKey: SigningKeypair
    repoCid: string
    repoRev: string
    inviteCode?: string
    deactivated?: boolean
  }): Promise<void> {
    const passwordScrypt = opts.password !== null ? await hashPassword(opts.password) : null
    // a head noted for an earlier account of this DID (deleted since) is not this one's
    this.pendingRoots.delete(opts.did)
    const now = new Date().toISOString()
    await this.db.transaction().execute(async (tx) => {
      if (opts.inviteCode) {
        await ensureInviteAvailable(tx, opts.inviteCode)
        await tx.insertInto('invite_code_use').values({ code: opts.inviteCode, usedBy: opts.did, usedAt: now }).execute()
      }
      const inserted = await tx
        .insertInto('account')
        .values({
          did: opts.did,
          handle: opts.handle,
          email: opts.email?.toLowerCase() ?? null,
          emailConfirmedAt: null,
          passwordScrypt,
          createdAt: now,
          deactivatedAt: opts.deactivated ? now : null,
          deleteAfter: null,
          takedownRef: null,
          invitesDisabled: 0,
        })
        .onConflict((oc) => oc.doNothing())
        .executeTakeFirst()
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0) !== 1) {
        throw new InvalidRequestError('Account already exists', 'HandleNotAvailable')
      }
      await tx
        .insertInto('signing_key')
        .values({ did: opts.did, curve: opts.signingKey.curve, privateKey: this.vault.seal(opts.did, opts.signingKey.export()) })
        .execute()
      await tx
        .insertInto('repo_root')
        .values({ did: opts.did, cid: opts.repoCid, rev: opts.repoRev, indexedAt: now })
        .execute()
    })
  }

  async getSigningKey(did: string): Promise<SigningKeypair | null> {
    const row = await this.db.selectFrom('signing_key').selectAll().where('did', '=', did).executeTakeFirst()
    if (!row) return null
    return importKeypair(this.vault.open(did, row.privateKey), row.curve as Curve)
  }

  async updateRepoRoot(did: string, cid: string, rev: string): Promise<void> {
    // newer than a head still waiting to be written
    this.pendingRoots.delete(did)
    await this.db
      .insertInto('repo_root')
      .values({ did, cid, rev, indexedAt: new Date().toISOString() })
      .onConflict((oc) => oc.column('did').doUpdateSet({ cid, rev, indexedAt: new Date().toISOString() }))
      .execute()
  }

  /** {@link updateRepoRoot} without a round through Kysely (the write path), falling back to it. */
  updateRepoRootSync(did: string, cid: string, rev: string): void | Promise<void> {
    if (!this.hot) return this.updateRepoRoot(did, cid, rev)
    // the account's row exists from its creation on; noted now, written at the end of the turn
    this.pendingRoots.set(did, { cid, rev, at: new Date().toISOString() })
    if (!this.rootsScheduled) {
      this.rootsScheduled = true
      setImmediate(() => {
        this.rootsScheduled = false
        try {
          this.flushRepoRoots()
        } catch {
          // left pending: the next write's flush, or a reader's, tries again
        }
      })
    }
  }

  async getRepoRoot(did: string): Promise<{ cid: string; rev: string } | null> {
    this.flushRepoRoots()
    const row = await this.db.selectFrom('repo_root').select(['cid', 'rev']).where('did', '=', did).executeTakeFirst()
    return row ?? null
  }

  /** Accounts with their repo heads, ordered by creation then DID (stable cursor). */
  async listRepos(opts: { limit: number; cursor?: string }): Promise<Array<Account & { head: string; rev: string }>> {
    this.flushRepoRoots()
    let q = this.db
      .selectFrom('account')
      .innerJoin('repo_root', 'repo_root.did', 'account.did')
      .selectAll('account')
      .select(['repo_root.cid as head', 'repo_root.rev as rev'])
      .orderBy('account.createdAt', 'asc')
      .orderBy('account.did', 'asc')
      .limit(opts.limit)
    if (opts.cursor) {
      const [createdAt, did] = parseRepoCursor(opts.cursor)
      q = q.where((eb) =>
        eb.or([
          eb('account.createdAt', '>', createdAt),
          eb.and([eb('account.createdAt', '=', createdAt), eb('account.did', '>', did)]),
        ]),
      )
    }
    const rows = await q.execute()
    return rows.map((r) => ({ ...toAccount(r), head: r.head, rev: r.rev }))
  }

  async setDeactivated(did: string, deactivated: boolean, deleteAfter: string | null = null): Promise<void> {
    await this.db
      .updateTable('account')
      .set({ deactivatedAt: deactivated ? new Date().toISOString() : null, deleteAfter: deactivated ? deleteAfter : null })
      .where('did', '=', did)
      .execute()
  }

  // login and sessions
  // -------

  /**
   * Checks an identifier (handle, email or DID) and a password (the account password or an app password).
   * Throws AuthenticationRequired "Invalid identifier or password" for any mismatch, without saying which.
   */
  /** A login identifier as the lookup uses it: trimmed, lower case (a DID keeps its case). */
  normaliseIdentifier(identifier: string): string {
    const id = identifier.trim()
    return id.startsWith('did:') ? id : id.toLowerCase()
  }

  /** The account a login identifier (handle, DID or email) names, if any. */
  async findLoginAccount(identifier: string) {
    const id = this.normaliseIdentifier(identifier)
    return this.db
      .selectFrom('account')
      .selectAll()
      .where((eb) =>
        id.includes('@') ? eb(eb.fn('lower', ['email']), '=', id) : id.startsWith('did:') ? eb('did', '=', id) : eb('handle', '=', id),
      )
      .executeTakeFirst()
  }

  async login(
    identifier: string,
    password: string,
    found?: Awaited<ReturnType<AccountManager['findLoginAccount']>> | null,
  ): Promise<{ account: Account; appPassword: AppPasswordDescript | null }> {
    const row = found === undefined ? await this.findLoginAccount(identifier) : (found ?? undefined)
    const invalid = () => new AuthRequiredError('Invalid identifier or password')
    if (password.length > MAX_PASSWORD_LENGTH * 2) throw invalid()
    if (!row) {
      // the same hashing work as for a real account, so the answer time does not tell whether it exists
      await verifyPassword(password, DUMMY_PASSWORD_HASH)
      if (APP_PASSWORD_REGEX.test(password)) await hashAppPassword('did:plc:unknown', password)
      throw invalid()
    }
    let appPassword: AppPasswordDescript | null = null
    const mainOk = row.passwordScrypt ? await verifyPassword(password, row.passwordScrypt) : await verifyPassword(password, DUMMY_PASSWORD_HASH).then(() => false)
    if (!mainOk) {
      appPassword = APP_PASSWORD_REGEX.test(password) ? await this.verifyAppPassword(row.did, password) : null
      if (!appPassword) throw invalid()
    }
    if (row.takedownRef) throw new AuthRequiredError('Account has been taken down', 'AccountTakedown')
    return { account: toAccount(row), appPassword }
  }

  private async verifyAppPassword(did: string, password: string): Promise<AppPasswordDescript | null> {
    const hash = await hashAppPassword(did, password)
    const row = await this.db
      .selectFrom('app_password')
      .select(['name', 'privileged'])
      .where('did', '=', did)
      .where('passwordScrypt', '=', hash)
      .executeTakeFirst()
    return row ? { name: row.name, privileged: row.privileged === 1 } : null
  }

  async createSession(did: string, appPassword: AppPasswordDescript | null): Promise<SessionTokensOut> {
    const id = newTokenId()
    const now = Date.now()
    const accessJwt = this.tokens.createAccessToken(did, scopeFor(appPassword), now)
    const refresh = this.tokens.createRefreshToken(did, id, now)
    await this.db
      .insertInto('refresh_token')
      .values({
        id,
        did,
        familyId: id,
        appPasswordName: appPassword?.name ?? null,
        expiresAt: new Date(refresh.expiresAt).toISOString(),
        nextId: null,
        graceUntil: null,
      })
      .execute()
    return { accessJwt, refreshJwt: refresh.jwt }
  }

  /**
   * Rotates a refresh token. The old token stays valid for a short grace (a client that lost the response
   * may retry and gets the same successor); presented again after the grace, it is treated as stolen and
   * the whole family of tokens from that login is revoked.
   */
  async rotateRefreshToken(id: string): Promise<SessionTokensOut & { did: string }> {
    const revoked = () => new InvalidRequestError('Token has been revoked', 'ExpiredToken')
    for (let attempt = 0; attempt < 3; attempt++) {
      const nowMs = Date.now()
      const now = new Date(nowMs).toISOString()
      const row = await this.db
        .selectFrom('refresh_token')
        .leftJoin('app_password', (j) =>
          j.onRef('app_password.did', '=', 'refresh_token.did').onRef('app_password.name', '=', 'refresh_token.appPasswordName'),
        )
        .selectAll('refresh_token')
        .select(['app_password.name as appPassName', 'app_password.privileged as appPassPrivileged'])
        .where('refresh_token.id', '=', id)
        .executeTakeFirst()
      if (!row) throw revoked()
      // tidy expired rows of this account (best effort)
      await this.db.deleteFrom('refresh_token').where('did', '=', row.did).where('expiresAt', '<=', now).execute()
      if (row.expiresAt <= now) throw revoked()
      if (row.appPasswordName && !row.appPassName) {
        await this.db.deleteFrom('refresh_token').where('id', '=', id).execute()
        throw revoked()
      }
      const appPassword = row.appPassName ? { name: row.appPassName, privileged: row.appPassPrivileged === 1 } : null
      const scope = scopeFor(appPassword)
      if (row.nextId) {
        if (row.graceUntil && row.graceUntil > now) {
          return { did: row.did, ...this.issue(row.did, row.nextId, scope, nowMs) }
        }
        // a spent token presented after its grace: somebody else holds this family
        await this.db.deleteFrom('refresh_token').where('familyId', '=', row.familyId).execute()
        throw revoked()
      }
      const nextId = newTokenId()
      const tokens = this.issue(row.did, nextId, scope, nowMs)
      const claimed = await this.db.transaction().execute(async (tx) => {
        const upd = await tx
          .updateTable('refresh_token')
          .set({
            nextId,
            graceUntil: new Date(nowMs + this.opts.refreshGraceMs).toISOString(),
            expiresAt: minIso(row.expiresAt, new Date(nowMs + SPENT_TOKEN_RETENTION_MS).toISOString()),
          })
          .where('id', '=', id)
          .where('nextId', 'is', null)
          .executeTakeFirst()
        if (Number(upd.numUpdatedRows) !== 1) return false
        await tx
          .insertInto('refresh_token')
          .values({
            id: nextId,
            did: row.did,
            familyId: row.familyId,
            appPasswordName: row.appPasswordName,
            expiresAt: new Date(tokens.refreshExpiresAt).toISOString(),
            nextId: null,
            graceUntil: null,
          })
          .execute()
        return true
      })
      if (claimed) return { did: row.did, accessJwt: tokens.accessJwt, refreshJwt: tokens.refreshJwt }
      // lost a race with a concurrent refresh of the same token: read again, we get the grace path
    }
    throw revoked()
  }

  private issue(did: string, jti: string, scope: AuthScope, nowMs: number) {
    const refresh = this.tokens.createRefreshToken(did, jti, nowMs)
    return {
      accessJwt: this.tokens.createAccessToken(did, scope, nowMs),
      refreshJwt: refresh.jwt,
      refreshExpiresAt: refresh.expiresAt,
    }
  }

  /** Revokes one refresh token and every token rotated from the same login. */
  async revokeRefreshToken(id: string): Promise<boolean> {
    const row = await this.db.selectFrom('refresh_token').select('familyId').where('id', '=', id).executeTakeFirst()
    if (!row) return false
    await this.db.deleteFrom('refresh_token').where('familyId', '=', row.familyId).execute()
    return true
  }

  async revokeAllSessions(did: string): Promise<void> {
    await this.db.deleteFrom('refresh_token').where('did', '=', did).execute()
  }

  /** Whether the app password a token was issued for still exists (a revoked one ends its sessions). */
  async appPasswordExists(did: string, name: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('app_password')
      .select('name')
      .where('did', '=', did)
      .where('name', '=', name)
      .executeTakeFirst()
    return !!row
  }

  // app passwords
  // -------

  async createAppPassword(did: string, name: string, privileged: boolean) {
    const password = generateAppPassword()
    const passwordScrypt = await hashAppPassword(did, password)
    const createdAt = new Date().toISOString()
    const res = await this.db
      .insertInto('app_password')
      .values({ did, name, passwordScrypt, createdAt, privileged: privileged ? 1 : 0 })
      .onConflict((oc) => oc.doNothing())
      .executeTakeFirst()
    if (Number(res.numInsertedOrUpdatedRows ?? 0) !== 1) {
      throw new InvalidRequestError('An app password with this name already exists', 'DuplicateName')
    }
    return { name, password, createdAt, privileged }
  }

  async listAppPasswords(did: string) {
    const rows = await this.db
      .selectFrom('app_password')
      .select(['name', 'createdAt', 'privileged'])
      .where('did', '=', did)
      .orderBy('createdAt', 'desc')
      .execute()
    return rows.map((r) => ({ name: r.name, createdAt: r.createdAt, privileged: r.privileged === 1 }))
  }

  async revokeAppPassword(did: string, name: string): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('app_password').where('did', '=', did).where('name', '=', name).execute()
      await tx.deleteFrom('refresh_token').where('did', '=', did).where('appPasswordName', '=', name).execute()
    })
  }

  // invite codes
  // -------

  async createInviteCodes(opts: { forAccounts: string[]; count: number; useCount: number; createdBy: string }) {
    const createdAt = new Date().toISOString()
    const out: Array<{ account: string; codes: string[] }> = []
    await this.db.transaction().execute(async (tx) => {
      for (const account of opts.forAccounts) {
        const codes: string[] = []
        for (let i = 0; i < opts.count; i++) {
          const code = this.newInviteCode()
          codes.push(code)
          await tx
            .insertInto('invite_code')
            .values({ code, availableUses: opts.useCount, disabled: 0, forAccount: account, createdBy: opts.createdBy, createdAt })
            .execute()
        }
        out.push({ account, codes })
      }
    })
    return out
  }

  /**
   * Invite codes an account earned but has not been given yet: one per `intervalMs` since it signed up,
   * minus those already created for it by itself (codes an admin gave it do not count). An account with
   * invites disabled earns none. Returns how many were created.
   */
  async createEarnedInviteCodes(did: string, intervalMs: number, now = Date.now()): Promise<number> {
    return this.db.transaction().execute(async (tx) => {
      const account = await tx.selectFrom('account').select(['createdAt', 'invitesDisabled']).where('did', '=', did).executeTakeFirst()
      if (!account || account.invitesDisabled) return 0
      const earned = Math.floor(Math.max(0, now - Date.parse(account.createdAt)) / intervalMs)
      const had = await tx
        .selectFrom('invite_code')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('forAccount', '=', did)
        .where('createdBy', '=', did)
        .executeTakeFirstOrThrow()
      const toCreate = earned - Number(had.n)
      const createdAt = new Date(now).toISOString()
      for (let i = 0; i < toCreate; i++) {
        await tx
          .insertInto('invite_code')
          .values({ code: this.newInviteCode(), availableUses: 1, disabled: 0, forAccount: did, createdBy: did, createdAt })
          .execute()
      }
      return Math.max(0, toCreate)
    })
  }

  async ensureInviteAvailable(code: string): Promise<void> {
    await ensureInviteAvailable(this.db, code)
  }

  private newInviteCode(): string {
    const part = () => randomBytes(4).toString('hex').slice(0, 5)
    return `${this.opts.hostname.replaceAll('.', '-')}-${part()}-${part()}`
  }
}

async function ensureInviteAvailable(db: Kysely<AccountDbSchema>, code: string): Promise<void> {
  const invite = await db
    .selectFrom('invite_code')
    .leftJoin('account', 'account.did', 'invite_code.forAccount')
    .select(['invite_code.availableUses', 'invite_code.disabled', 'account.takedownRef', 'account.invitesDisabled', 'invite_code.forAccount'])
    .where('invite_code.code', '=', code)
    .executeTakeFirst()
  const unavailable = () => new InvalidRequestError('Provided invite code not available', 'InvalidInviteCode')
  // an account whose invites an admin disabled cannot bring anyone in with its codes
  if (!invite || invite.disabled || invite.takedownRef || invite.invitesDisabled) throw unavailable()
  const uses = await db
    .selectFrom('invite_code_use')
    .select((eb) => eb.fn.countAll<number>().as('count'))
    .where('code', '=', code)
    .executeTakeFirstOrThrow()
  if (Number(uses.count) >= invite.availableUses) throw unavailable()
}

const minIso = (a: string, b: string) => (a < b ? a : b)

export const repoCursor = (createdAt: string, did: string) => `${Date.parse(createdAt)}::${did}`
function parseRepoCursor(cursor: string): [string, string] {
  const idx = cursor.indexOf('::')
  const ms = Number(cursor.slice(0, idx))
  if (idx < 0 || !Number.isFinite(ms)) throw new InvalidRequestError('Malformed cursor')
  return [new Date(ms).toISOString(), cursor.slice(idx + 2)]
}
