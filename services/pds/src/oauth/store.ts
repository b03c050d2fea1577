import type { Kysely, Selectable } from 'kysely'
import type { Account as OAuthAccount } from '@atproto/oauth-provider-api'
import { InvalidCredentialsError, InvalidGrantError, InvalidRequestError } from '@atproto/oauth-provider/errors'
import type {
  AccountStore,
  AuthenticateAccountData,
  AuthorizedClientData,
  AuthorizedClients,
  ClientId,
  Code,
  CreateTokenData,
  DeviceAccount,
  DeviceData,
  DeviceId,
  DeviceStore,
  Did,
  FoundRequestResult,
  LexiconData,
  LexiconStore,
  NewTokenData,
  RefreshToken,
  ReplayStore,
  RequestData,
  RequestId,
  RequestStore,
  TokenId,
  TokenInfo,
  TokenStore,
  UpdateRequestData,
} from '@atproto/oauth-provider/store'
import { changeHandle, sendEmailToken } from '../account/lifecycle.js'
import type { Account } from '../account/manager.js'
import type { AccountDbSchema, OAuthTokenTable } from '../account/db.js'
import { MAX_PASSWORD_LENGTH } from '../account/password.js'
import type { AppContext } from '../context.js'

const iso = (d: Date) => d.toISOString()
const json = (v: unknown) => JSON.stringify(v)

type TokenRow = Selectable<OAuthTokenTable>

/**
 * The authorization server's state on the PDS's service database: devices, signed-in device accounts,
 * granted clients, pending requests, OAuth sessions (tokens) and rotated refresh tokens, cached lexicons
 * and the DPoP replay window. Accounts are the PDS's own: sign-in checks the account password (app
 * passwords are for legacy sessions, not for OAuth), handles and emails change through the same code as
 * the XRPC methods.
 */
export class OAuthStore implements AccountStore, DeviceStore, RequestStore, TokenStore, LexiconStore, ReplayStore {
  private readonly db: Kysely<AccountDbSchema>

  constructor(private readonly ctx: AppContext) {
    this.db = ctx.accountDb.db
  }

  // accounts
  // -------

  toOAuthAccount(a: Account): OAuthAccount {
    return {
      did: a.did as OAuthAccount['did'],
      pds: this.ctx.cfg.service.did as OAuthAccount['pds'],
      deactivated: a.deactivatedAt !== null,
      ...(a.handle ? { handle: a.handle as OAuthAccount['handle'] } : {}),
      ...(a.email ? { email: a.email, emailVerified: a.emailConfirmedAt !== null } : {}),
    }
  }

  private async requireAccount(did: string): Promise<Account> {
    const account = await this.ctx.accounts.getAccount(did, { includeDeactivated: true })
    if (!account) throw new InvalidRequestError('Account not found')
    return account
  }

  async createAccount(): Promise<OAuthAccount> {
    // accounts are created with com.atproto.server.createAccount (invites, PLC); the pages only sign in
    throw new InvalidRequestError('Sign-up is not available here; create the account in an atproto app')
  }

  async authenticateAccount({ username, password }: AuthenticateAccountData): Promise<OAuthAccount> {
    if (password.length > MAX_PASSWORD_LENGTH * 2) throw new InvalidCredentialsError('Invalid identifier or password')
    let result
    try {
      result = await this.ctx.accounts.login(username, password)
    } catch {
      throw new InvalidCredentialsError('Invalid identifier or password')
    }
    // an app password is a credential for legacy sessions: OAuth sign-in takes the account password
    if (result.appPassword) throw new InvalidCredentialsError('Invalid identifier or password', result.account.did as Did)
    return this.toOAuthAccount(result.account)
  }

  async setAuthorizedClient(did: Did, clientId: ClientId, data: AuthorizedClientData): Promise<void> {
    await this.db
      .insertInto('oauth_authorized_client')
      .values({ did, clientId, scopes: json(data.authorizedScopes), updatedAt: iso(new Date()) })
      .onConflict((oc) => oc.columns(['did', 'clientId']).doUpdateSet({ scopes: json(data.authorizedScopes), updatedAt: iso(new Date()) }))
      .execute()
  }

  private async authorizedClients(did: string): Promise<AuthorizedClients> {
    const rows = await this.db.selectFrom('oauth_authorized_client').selectAll().where('did', '=', did).execute()
    return new Map(rows.map((r) => [r.clientId as ClientId, { authorizedScopes: JSON.parse(r.scopes) as string[] }]))
  }

  async getAccount(did: Did): Promise<{ account: OAuthAccount; authorizedClients: AuthorizedClients }> {
    const account = await this.requireAccount(did)
    if (account.takedownRef) throw new InvalidRequestError('Account has been taken down')
    return { account: this.toOAuthAccount(account), authorizedClients: await this.authorizedClients(did) }
  }

  async upsertDeviceAccount(deviceId: DeviceId, did: Did): Promise<void> {
    const now = iso(new Date())
    await this.db
      .insertInto('oauth_device_account')
      .values({ deviceId, did, createdAt: now, updatedAt: now })
      .onConflict((oc) => oc.columns(['deviceId', 'did']).doUpdateSet({ updatedAt: now }))
      .execute()
  }

  private async deviceAccounts(where: { deviceId: string; did?: string } | { did: string }): Promise<DeviceAccount[]> {
    let q = this.db
      .selectFrom('oauth_device_account')
      .innerJoin('oauth_device', 'oauth_device.id', 'oauth_device_account.deviceId')
      .innerJoin('account', 'account.did', 'oauth_device_account.did')
      .selectAll('oauth_device_account')
      .select(['oauth_device.sessionId', 'oauth_device.userAgent', 'oauth_device.ipAddress', 'oauth_device.lastSeenAt'])
      .where('account.takedownRef', 'is', null)
    if ('deviceId' in where) q = q.where('oauth_device_account.deviceId', '=', where.deviceId)
    if (where.did) q = q.where('oauth_device_account.did', '=', where.did)
    const rows = await q.execute()
    const out: DeviceAccount[] = []
    for (const row of rows) {
      const account = await this.ctx.accounts.getAccount(row.did, { includeDeactivated: true })
      if (!account) continue
      out.push({
        deviceId: row.deviceId as DeviceId,
        deviceData: {
          sessionId: row.sessionId as DeviceData['sessionId'],
          userAgent: row.userAgent,
          ipAddress: row.ipAddress,
          lastSeenAt: new Date(row.lastSeenAt),
        },
        account: this.toOAuthAccount(account),
        authorizedClients: await this.authorizedClients(row.did),
        createdAt: new Date(row.createdAt),
        updatedAt: new Date(row.updatedAt),
      })
    }
    return out
  }

  async getDeviceAccount(deviceId: DeviceId, did: Did): Promise<DeviceAccount | null> {
    const [found] = await this.deviceAccounts({ deviceId, did })
    return found ?? null
  }

  async removeDeviceAccount(deviceId: DeviceId, did: Did): Promise<void> {
    await this.db.deleteFrom('oauth_device_account').where('deviceId', '=', deviceId).where('did', '=', did).execute()
  }

  listDeviceAccounts(filter: { did: Did } | { deviceId: DeviceId }): Promise<DeviceAccount[]> {
    return this.deviceAccounts(filter)
  }

  async resetPasswordRequest({ email }: { email: string }): Promise<OAuthAccount | null> {
    const account = await this.ctx.accounts.getAccountByEmail(email.trim())
    if (!account || account.takedownRef) return null
    await sendEmailToken(this.ctx, account, 'reset_password')
    return this.toOAuthAccount(account)
  }

  async resetPasswordConfirm({ token, password }: { token: string; password: string }): Promise<OAuthAccount | null> {
    if (!password || password.length > MAX_PASSWORD_LENGTH) throw new InvalidRequestError('Invalid password')
    const did = await this.ctx.settings.didForEmailToken('reset_password', token).catch(() => null)
    if (!did) throw new InvalidRequestError('Invalid or expired token')
    await this.ctx.settings.consumeEmailToken(did, 'reset_password', token)
    await this.ctx.settings.updatePassword(did, password)
    return this.toOAuthAccount(await this.requireAccount(did))
  }

  async updateEmailRequest({ did }: { did: string }): Promise<{ tokenRequired: boolean }> {
    const account = await this.requireAccount(did)
    // a confirmed address must confirm the change from that address; an unconfirmed one may just change
    if (!account.emailConfirmedAt) return { tokenRequired: false }
    await sendEmailToken(this.ctx, account, 'update_email')
    return { tokenRequired: true }
  }

  async updateEmailConfirm({ did, token, email }: { did: string; token?: string; email: string }): Promise<OAuthAccount> {
    const account = await this.requireAccount(did)
    if (account.emailConfirmedAt) {
      if (!token) throw new InvalidRequestError('A confirmation token is required')
      await this.ctx.settings.assertValidEmailToken(did, 'update_email', token)
      await this.ctx.settings.consumeEmailToken(did, 'update_email', token)
    }
    const existing = await this.ctx.accounts.getAccountByEmail(email)
    if (existing && existing.did !== did) throw new InvalidRequestError('This email address is already in use')
    await this.ctx.settings.updateEmail(did, email.trim())
    return this.toOAuthAccount(await this.requireAccount(did))
  }

  async verifyEmailRequest({ did }: { did: string }): Promise<void> {
    await sendEmailToken(this.ctx, await this.requireAccount(did), 'confirm_email')
  }

  async verifyEmailConfirm({ did, token, email }: { did: string; token: string; email: string }): Promise<OAuthAccount> {
    const account = await this.requireAccount(did)
    if (account.email?.toLowerCase() !== email.trim().toLowerCase()) throw new InvalidRequestError('Invalid email')
    await this.ctx.settings.assertValidEmailToken(did, 'confirm_email', token)
    await this.ctx.settings.consumeEmailToken(did, 'confirm_email', token)
    await this.ctx.settings.confirmEmail(did)
    return this.toOAuthAccount(await this.requireAccount(did))
  }

  async verifyHandleAvailability(handle: string): Promise<void> {
    if (await this.ctx.accounts.isHandleTaken(handle)) throw new InvalidRequestError('Handle already taken')
  }

  async updateHandle({ did, handle }: { did: string; handle: string }): Promise<OAuthAccount> {
    await changeHandle(this.ctx, did, handle)
    return this.toOAuthAccount(await this.requireAccount(did))
  }

  async deactivateAccount({ did }: { did: string }): Promise<OAuthAccount> {
    throw new InvalidRequestError(`Deactivate ${did} with com.atproto.server.deactivateAccount from an app`)
  }

  async reactivateAccount({ did }: { did: string }): Promise<OAuthAccount> {
    throw new InvalidRequestError(`Reactivate ${did} with com.atproto.server.activateAccount from an app`)
  }

  async deleteAccountRequest(): Promise<void> {
    throw new InvalidRequestError('Delete the account with com.atproto.server.requestAccountDelete from an app')
  }

  async deleteAccountConfirm(): Promise<void> {
    throw new InvalidRequestError('Delete the account with com.atproto.server.deleteAccount from an app')
  }

  // devices
  // -------

  async createDevice(deviceId: DeviceId, data: DeviceData): Promise<void> {
    await this.db
      .insertInto('oauth_device')
      .values({
        id: deviceId,
        sessionId: data.sessionId,
        userAgent: data.userAgent,
        ipAddress: data.ipAddress,
        lastSeenAt: iso(data.lastSeenAt),
      })
      .execute()
  }

  async readDevice(deviceId: DeviceId): Promise<DeviceData | null> {
    const row = await this.db.selectFrom('oauth_device').selectAll().where('id', '=', deviceId).executeTakeFirst()
    if (!row) return null
    return {
      sessionId: row.sessionId as DeviceData['sessionId'],
      userAgent: row.userAgent,
      ipAddress: row.ipAddress,
      lastSeenAt: new Date(row.lastSeenAt),
    }
  }

  async updateDevice(deviceId: DeviceId, data: Partial<DeviceData>): Promise<void> {
    const set: { sessionId?: string; userAgent?: string | null; ipAddress?: string; lastSeenAt?: string } = {}
    if (data.sessionId !== undefined) set.sessionId = data.sessionId
    if (data.userAgent !== undefined) set.userAgent = data.userAgent
    if (data.ipAddress !== undefined) set.ipAddress = data.ipAddress
    if (data.lastSeenAt !== undefined) set.lastSeenAt = iso(data.lastSeenAt)
    if (Object.keys(set).length === 0) return
    await this.db.updateTable('oauth_device').set(set).where('id', '=', deviceId).execute()
  }

  async deleteDevice(deviceId: DeviceId): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('oauth_device_account').where('deviceId', '=', deviceId).execute()
      await tx.deleteFrom('oauth_device').where('id', '=', deviceId).execute()
    })
  }

  // authorization requests
  // -------

  async createRequest(requestId: RequestId, data: RequestData): Promise<void> {
    // expired requests are dropped as new ones arrive
    await this.db.deleteFrom('oauth_request').where('expiresAt', '<', iso(new Date(Date.now() - 60 * 60 * 1000))).execute()
    await this.db
      .insertInto('oauth_request')
      .values({
        id: requestId,
        clientId: data.clientId,
        clientAuth: data.clientAuth ? json(data.clientAuth) : null,
        parameters: json(data.parameters),
        expiresAt: iso(data.expiresAt),
        deviceId: data.deviceId,
        did: data.did,
        code: data.code,
      })
      .execute()
  }

  private toRequestData(row: Selectable<AccountDbSchema['oauth_request']>): RequestData {
    return {
      clientId: row.clientId as ClientId,
      clientAuth: row.clientAuth ? JSON.parse(row.clientAuth) : null,
      parameters: JSON.parse(row.parameters),
      expiresAt: new Date(row.expiresAt),
      deviceId: row.deviceId as DeviceId | null,
      did: row.did as Did | null,
      code: row.code as Code | null,
    }
  }

  async readRequest(requestId: RequestId): Promise<RequestData | null> {
    const row = await this.db.selectFrom('oauth_request').selectAll().where('id', '=', requestId).executeTakeFirst()
    return row ? this.toRequestData(row) : null
  }

  async updateRequest(requestId: RequestId, data: UpdateRequestData): Promise<void> {
    const set: { did?: string | null; code?: string | null; deviceId?: string | null; expiresAt?: string; parameters?: string } = {}
    if (data.did !== undefined) set.did = data.did
    if (data.code !== undefined) set.code = data.code
    if (data.deviceId !== undefined) set.deviceId = data.deviceId
    if (data.expiresAt !== undefined) set.expiresAt = iso(data.expiresAt)
    if (data.parameters !== undefined) set.parameters = json(data.parameters)
    if (Object.keys(set).length === 0) return
    await this.db.updateTable('oauth_request').set(set).where('id', '=', requestId).execute()
  }

  async deleteRequest(requestId: RequestId): Promise<void> {
    await this.db.deleteFrom('oauth_request').where('id', '=', requestId).execute()
  }

  async consumeRequestCode(code: Code): Promise<FoundRequestResult | null> {
    // one statement: of two concurrent exchanges of a code only one gets the row
    const row = await this.db.deleteFrom('oauth_request').where('code', '=', code).returningAll().executeTakeFirst()
    if (!row) return null
    if (new Date(row.expiresAt).getTime() < Date.now()) throw new InvalidGrantError('This code has expired')
    return { requestId: row.id as RequestId, data: this.toRequestData(row) }
  }

  // tokens (OAuth sessions)
  // -------

  private async toTokenInfo(row: TokenRow): Promise<TokenInfo | null> {
    const account = await this.ctx.accounts.getAccount(row.did, { includeDeactivated: true })
    if (!account) return null
    return {
      id: row.tokenId as TokenId,
      data: {
        createdAt: new Date(row.createdAt),
        updatedAt: new Date(row.updatedAt),
        expiresAt: new Date(row.expiresAt),
        clientId: row.clientId as ClientId,
        clientAuth: JSON.parse(row.clientAuth),
        deviceId: row.deviceId as DeviceId | null,
        did: row.did as Did,
        parameters: JSON.parse(row.parameters),
        code: row.code as Code | null,
        scope: row.scope,
      },
      account: this.toOAuthAccount(account),
      currentRefreshToken: row.currentRefreshToken as RefreshToken | null,
    }
  }

  async createToken(tokenId: TokenId, data: CreateTokenData, refreshToken?: RefreshToken): Promise<void> {
    await this.db
      .insertInto('oauth_token')
      .values({
        tokenId,
        did: data.did,
        clientId: data.clientId,
        clientAuth: json(data.clientAuth),
        deviceId: data.deviceId,
        parameters: json(data.parameters),
        scope: data.scope,
        code: data.code,
        currentRefreshToken: refreshToken ?? null,
        createdAt: iso(data.createdAt),
        updatedAt: iso(data.updatedAt),
        expiresAt: iso(data.expiresAt),
      })
      .execute()
  }

  async readToken(tokenId: TokenId): Promise<TokenInfo | null> {
    const row = await this.db.selectFrom('oauth_token').selectAll().where('tokenId', '=', tokenId).executeTakeFirst()
    return row ? this.toTokenInfo(row) : null
  }

  async deleteToken(tokenId: TokenId): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      const row = await tx.deleteFrom('oauth_token').where('tokenId', '=', tokenId).returning('rowId').executeTakeFirst()
      if (row) await tx.deleteFrom('oauth_used_refresh_token').where('tokenRowId', '=', row.rowId).execute()
    })
  }

  async rotateToken(tokenId: TokenId, newTokenId: TokenId, newRefreshToken: RefreshToken, newData: NewTokenData): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      const row = await tx
        .selectFrom('oauth_token')
        .select(['rowId', 'currentRefreshToken'])
        .where('tokenId', '=', tokenId)
        .executeTakeFirst()
      if (!row) throw new InvalidGrantError('Invalid refresh token')
      if (row.currentRefreshToken) {
        await tx.insertInto('oauth_used_refresh_token').values({ refreshToken: row.currentRefreshToken, tokenRowId: row.rowId }).execute()
      }
      await tx
        .updateTable('oauth_token')
        .set({
          tokenId: newTokenId,
          currentRefreshToken: newRefreshToken,
          clientAuth: json(newData.clientAuth),
          expiresAt: iso(newData.expiresAt),
          updatedAt: iso(newData.updatedAt),
          scope: newData.scope,
        })
        .where('rowId', '=', row.rowId)
        .execute()
    })
  }

  async findTokenByRefreshToken(refreshToken: RefreshToken): Promise<TokenInfo | null> {
    const current = await this.db
      .selectFrom('oauth_token')
      .selectAll()
      .where('currentRefreshToken', '=', refreshToken)
      .executeTakeFirst()
    if (current) return this.toTokenInfo(current)
    const used = await this.db
      .selectFrom('oauth_used_refresh_token')
      .innerJoin('oauth_token', 'oauth_token.rowId', 'oauth_used_refresh_token.tokenRowId')
      .selectAll('oauth_token')
      .where('oauth_used_refresh_token.refreshToken', '=', refreshToken)
      .executeTakeFirst()
    return used ? this.toTokenInfo(used) : null
  }

  async findTokenByCode(code: Code): Promise<TokenInfo | null> {
    const row = await this.db.selectFrom('oauth_token').selectAll().where('code', '=', code).executeTakeFirst()
    return row ? this.toTokenInfo(row) : null
  }

  async listAccountTokens(did: Did): Promise<TokenInfo[]> {
    const rows = await this.db.selectFrom('oauth_token').selectAll().where('did', '=', did).orderBy('createdAt', 'desc').execute()
    const out: TokenInfo[] = []
    for (const row of rows) {
      const info = await this.toTokenInfo(row)
      if (info) out.push(info)
    }
    return out
  }

  // lexicons (permission sets named by include: scopes)
  // -------

  async findLexicon(nsid: string): Promise<LexiconData | null> {
    const row = await this.db.selectFrom('oauth_lexicon').select('data').where('nsid', '=', nsid).executeTakeFirst()
    if (!row) return null
    const d = JSON.parse(row.data)
    return {
      ...d,
      createdAt: new Date(d.createdAt),
      updatedAt: new Date(d.updatedAt),
      lastSucceededAt: d.lastSucceededAt ? new Date(d.lastSucceededAt) : null,
    }
  }

  async storeLexicon(nsid: string, data: LexiconData): Promise<void> {
    await this.db
      .insertInto('oauth_lexicon')
      .values({ nsid, data: json(data) })
      .onConflict((oc) => oc.column('nsid').doUpdateSet({ data: json(data) }))
      .execute()
  }

  async deleteLexicon(nsid: string): Promise<void> {
    await this.db.deleteFrom('oauth_lexicon').where('nsid', '=', nsid).execute()
  }

  // replay protection (DPoP proof jti, client assertion jti)
  // -------

  async unique(namespace: string, nonce: string, timeFrame: number): Promise<boolean> {
    const now = Date.now()
    if (Math.random() < 0.01) await this.db.deleteFrom('oauth_replay').where('expiresAt', '<', now).execute()
    const res = await this.db
      .insertInto('oauth_replay')
      .values({ namespace, nonce, expiresAt: now + timeFrame })
      .onConflict((oc) => oc.columns(['namespace', 'nonce']).doUpdateSet({ expiresAt: now + timeFrame }).where('oauth_replay.expiresAt', '<', now))
      .executeTakeFirst()
    return Number(res.numInsertedOrUpdatedRows ?? 0n) > 0
  }
}
