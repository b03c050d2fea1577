import { randomInt } from 'node:crypto'
import { KeyVault } from './key-vault.js'
import type { Kysely } from 'kysely'
import { generateKeypair, importKeypair, type Curve, type SigningKeypair } from '@stratos/core/crypto'
import { InvalidRequestError } from '../errors.js'
import type { AccountDbSchema } from './db.js'
import { hashPassword, verifyPassword } from './password.js'

/** What an emailed token is for; one live token per purpose and account. */
export type EmailTokenPurpose = 'confirm_email' | 'update_email' | 'reset_password' | 'delete_account' | 'plc_operation'

/** Emailed tokens are valid this long. */
export const EMAIL_TOKEN_TTL_MS = 15 * 60 * 1000

const TOKEN_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'

/** `XXXXX-XXXXX` from base32 letters: easy to type, 50 bits. */
export function newEmailToken(): string {
  const part = () => Array.from({ length: 5 }, () => TOKEN_ALPHABET[randomInt(TOKEN_ALPHABET.length)]).join('')
  return `${part()}-${part()}`
}

const normalizeToken = (token: string) => token.trim().toUpperCase()

export interface InviteCodeView {
  code: string
  available: number
  disabled: boolean
  forAccount: string
  createdBy: string
  createdAt: string
  uses: { usedBy: string; usedAt: string }[]
}

const isUniqueViolation = (err: unknown) =>
  err instanceof Error && /UNIQUE constraint failed|duplicate key value/i.test(err.message)

/**
 * Account settings and their life cycle on the service database: emailed tokens, handle, email and
 * password changes, takedown, deletion, invite administration, reserved signing keys.
 */
export class AccountSettings {
  constructor(
    readonly db: Kysely<AccountDbSchema>,
    private readonly vault: KeyVault = new KeyVault(null),
  ) {}

  // emailed tokens
  // -------

  async createEmailToken(did: string, purpose: EmailTokenPurpose): Promise<string> {
    const token = newEmailToken()
    const requestedAt = new Date().toISOString()
    await this.db
      .insertInto('email_token')
      .values({ purpose, did, token, requestedAt })
      .onConflict((oc) => oc.columns(['purpose', 'did']).doUpdateSet({ token, requestedAt }))
      .execute()
    return token
  }

  /** Throws InvalidToken (no such token) or ExpiredToken. */
  async assertValidEmailToken(did: string, purpose: EmailTokenPurpose, token: string, now = Date.now()): Promise<void> {
    const row = await this.db
      .selectFrom('email_token')
      .selectAll()
      .where('purpose', '=', purpose)
      .where('did', '=', did)
      .where('token', '=', normalizeToken(token))
      .executeTakeFirst()
    if (!row) throw new InvalidRequestError('Token is invalid', 'InvalidToken')
    if (Date.parse(row.requestedAt) + EMAIL_TOKEN_TTL_MS < now) {
      throw new InvalidRequestError('Token is expired', 'ExpiredToken')
    }
  }

  /** Checks the token and removes it (a token works once). */
  async consumeEmailToken(did: string, purpose: EmailTokenPurpose, token: string): Promise<void> {
    await this.assertValidEmailToken(did, purpose, token)
    await this.db.deleteFrom('email_token').where('purpose', '=', purpose).where('did', '=', did).execute()
  }

  /** The account a token (of a purpose) was issued to: password reset, where the caller has no session. */
  async didForEmailToken(purpose: EmailTokenPurpose, token: string): Promise<string> {
    const row = await this.db
      .selectFrom('email_token')
      .select('did')
      .where('purpose', '=', purpose)
      .where('token', '=', normalizeToken(token))
      .executeTakeFirst()
    if (!row) throw new InvalidRequestError('Token is invalid', 'InvalidToken')
    return row.did
  }

  // account fields
  // -------

  /** The account password (never an app password), for deleteAccount. */
  async verifyAccountPassword(did: string, password: string): Promise<boolean> {
    const row = await this.db.selectFrom('account').select('passwordScrypt').where('did', '=', did).executeTakeFirst()
    if (!row?.passwordScrypt) return false
    return verifyPassword(password, row.passwordScrypt)
  }

  async updateHandle(did: string, handle: string): Promise<void> {
    try {
      await this.db.updateTable('account').set({ handle }).where('did', '=', did).execute()
    } catch (err) {
      if (isUniqueViolation(err)) throw new InvalidRequestError(`Handle already taken: ${handle}`, 'HandleNotAvailable')
      throw err
    }
  }

  /** Sets a new (unconfirmed) email; outstanding email tokens of the account are dropped. */
  async updateEmail(did: string, email: string): Promise<void> {
    try {
      await this.db.transaction().execute(async (tx) => {
        await tx.updateTable('account').set({ email: email.toLowerCase(), emailConfirmedAt: null }).where('did', '=', did).execute()
        await tx
          .deleteFrom('email_token')
          .where('did', '=', did)
          .where('purpose', 'in', ['confirm_email', 'update_email'])
          .execute()
      })
    } catch (err) {
      if (isUniqueViolation(err)) throw new InvalidRequestError('This email address is already in use, please use a different email.')
      throw err
    }
  }

  async confirmEmail(did: string): Promise<void> {
    await this.db.updateTable('account').set({ emailConfirmedAt: new Date().toISOString() }).where('did', '=', did).execute()
  }

  /** New account password; every session of the account ends. */
  async updatePassword(did: string, password: string): Promise<void> {
    const passwordScrypt = await hashPassword(password)
    await this.db.transaction().execute(async (tx) => {
      await tx.updateTable('account').set({ passwordScrypt }).where('did', '=', did).execute()
      await tx.deleteFrom('refresh_token').where('did', '=', did).execute()
      await tx.deleteFrom('email_token').where('did', '=', did).where('purpose', '=', 'reset_password').execute()
    })
  }

  /** Applies (ref) or lifts (null) an account takedown; applying one ends every session. */
  async setTakedown(did: string, takedownRef: string | null): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await tx.updateTable('account').set({ takedownRef }).where('did', '=', did).execute()
      if (takedownRef) await tx.deleteFrom('refresh_token').where('did', '=', did).execute()
    })
  }

  /** Removes every row of the account from the service database (invite codes it used stay counted). */
  async deleteAccount(did: string): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('refresh_token').where('did', '=', did).execute()
      await tx.deleteFrom('app_password').where('did', '=', did).execute()
      await tx.deleteFrom('email_token').where('did', '=', did).execute()
      await tx.deleteFrom('signing_key').where('did', '=', did).execute()
      await tx.deleteFrom('repo_root').where('did', '=', did).execute()
      await tx.deleteFrom('reserved_signing_key').where('did', '=', did).execute()
      await tx.updateTable('invite_code').set({ disabled: 1 }).where('forAccount', '=', did).execute()
      await tx.deleteFrom('account').where('did', '=', did).execute()
    })
  }

  // invites
  // -------

  async setInvitesDisabled(did: string, disabled: boolean): Promise<void> {
    await this.db.updateTable('account').set({ invitesDisabled: disabled ? 1 : 0 }).where('did', '=', did).execute()
  }

  async disableInviteCodes(opts: { codes?: string[]; accounts?: string[] }): Promise<void> {
    const codes = opts.codes ?? []
    const accounts = opts.accounts ?? []
    if (codes.length > 0) await this.db.updateTable('invite_code').set({ disabled: 1 }).where('code', 'in', codes).execute()
    if (accounts.length > 0) {
      await this.db.updateTable('invite_code').set({ disabled: 1 }).where('forAccount', 'in', accounts).execute()
    }
  }

  private async withUses(
    rows: Array<{ code: string; availableUses: number; disabled: number; forAccount: string; createdBy: string; createdAt: string }>,
  ): Promise<InviteCodeView[]> {
    if (rows.length === 0) return []
    const uses = await this.db
      .selectFrom('invite_code_use')
      .selectAll()
      .where(
        'code',
        'in',
        rows.map((r) => r.code),
      )
      .orderBy('usedAt', 'asc')
      .execute()
    const byCode = new Map<string, { usedBy: string; usedAt: string }[]>()
    for (const u of uses) {
      const list = byCode.get(u.code) ?? []
      list.push({ usedBy: u.usedBy, usedAt: u.usedAt })
      byCode.set(u.code, list)
    }
    return rows.map((r) => ({
      code: r.code,
      available: r.availableUses,
      disabled: r.disabled === 1,
      forAccount: r.forAccount,
      createdBy: r.createdBy,
      createdAt: r.createdAt,
      uses: byCode.get(r.code) ?? [],
    }))
  }

  /** Every invite code, newest first (or by use count), paginated by an opaque cursor. */
  async listInviteCodes(opts: { sort: 'recent' | 'usage'; limit: number; cursor?: string }): Promise<{ codes: InviteCodeView[]; cursor?: string }> {
    const offset = opts.cursor ? Number(opts.cursor) : 0
    if (!Number.isInteger(offset) || offset < 0) throw new InvalidRequestError('Malformed cursor')
    let q = this.db
      .selectFrom('invite_code')
      .selectAll('invite_code')
      .select((eb) =>
        eb.selectFrom('invite_code_use').select(eb.fn.countAll<number>().as('n')).whereRef('invite_code_use.code', '=', 'invite_code.code').as('useCount'),
      )
    q = opts.sort === 'usage' ? q.orderBy('useCount', 'desc').orderBy('invite_code.createdAt', 'desc') : q.orderBy('invite_code.createdAt', 'desc')
    const rows = await q.orderBy('invite_code.code', 'asc').limit(opts.limit).offset(offset).execute()
    const codes = await this.withUses(rows)
    return { codes, cursor: rows.length === opts.limit ? String(offset + rows.length) : undefined }
  }

  async inviteCodesOf(did: string): Promise<InviteCodeView[]> {
    const rows = await this.db.selectFrom('invite_code').selectAll().where('forAccount', '=', did).orderBy('createdAt', 'desc').execute()
    return this.withUses(rows)
  }

  /** The invite code an account signed up with, if any. */
  async invitedBy(did: string): Promise<InviteCodeView | undefined> {
    const use = await this.db.selectFrom('invite_code_use').select('code').where('usedBy', '=', did).executeTakeFirst()
    if (!use) return undefined
    const rows = await this.db.selectFrom('invite_code').selectAll().where('code', '=', use.code).execute()
    return (await this.withUses(rows))[0]
  }

  // reserved signing keys (an account moving here signs its DID document over to this key first)
  // -------

  async reserveSigningKey(did: string | null, curve: Curve = 'k256'): Promise<SigningKeypair> {
    if (did) {
      const existing = await this.db.selectFrom('reserved_signing_key').selectAll().where('did', '=', did).executeTakeFirst()
      if (existing) return importKeypair(this.vault.open(existing.keyDid, existing.privateKey), existing.curve as Curve)
    }
    const key = await generateKeypair(curve)
    await this.db
      .insertInto('reserved_signing_key')
      .values({ keyDid: key.did(), did, curve, privateKey: this.vault.seal(key.did(), key.export()), createdAt: new Date().toISOString() })
      .execute()
    return key
  }

  /** The key reserved for a DID, if any (left in the reserve; see {@link clearReservedSigningKey}). */
  async getReservedSigningKey(did: string): Promise<SigningKeypair | null> {
    const row = await this.db.selectFrom('reserved_signing_key').selectAll().where('did', '=', did).executeTakeFirst()
    return row ? importKeypair(this.vault.open(row.keyDid, row.privateKey), row.curve as Curve) : null
  }

  /** Removes a reserved key once an account uses it. */
  async clearReservedSigningKey(keyDid: string): Promise<void> {
    await this.db.deleteFrom('reserved_signing_key').where('keyDid', '=', keyDid).execute()
  }

  /** A reserved key by its did:key (or the one reserved for a DID), removed from the reserve. */
  async takeReservedSigningKey(opts: { keyDid?: string; did?: string }): Promise<SigningKeypair | null> {
    let q = this.db.selectFrom('reserved_signing_key').selectAll()
    if (opts.keyDid) q = q.where('keyDid', '=', opts.keyDid)
    else if (opts.did) q = q.where('did', '=', opts.did)
    else return null
    const row = await q.executeTakeFirst()
    if (!row) return null
    await this.db.deleteFrom('reserved_signing_key').where('keyDid', '=', row.keyDid).execute()
    return importKeypair(this.vault.open(row.keyDid, row.privateKey), row.curve as Curve)
  }
}

