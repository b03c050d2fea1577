import { adminBasicAuth, parseAuthorization, type AdminCredentials, type AuthContext, type AuthVerifier } from '@stratos/core/xrpc'
import type { Account, AccountManager } from './account/manager.js'
import { AuthScope, TokenError, type SessionTokens } from './account/tokens.js'
import { AuthRequiredError, ForbiddenError, InvalidRequestError } from './errors.js'

export interface AccessCredentials {
  type: 'access'
  did: string
  scope: AuthScope
}

export interface RefreshCredentials {
  type: 'refresh'
  did: string
  tokenId: string
}

export interface VerifyOptions {
  /** refuse taken-down accounts (AccountTakedown) */
  checkTakedown?: boolean
  /** refuse deactivated accounts (AccountDeactivated) */
  checkDeactivated?: boolean
}

/** Every session: full password and app passwords. */
export const ACCESS_STANDARD: AuthScope[] = [AuthScope.Access, AuthScope.AppPass, AuthScope.AppPassPrivileged]
/** Account settings (app passwords, email, deletion...): full password sessions only. */
export const ACCESS_FULL: AuthScope[] = [AuthScope.Access]
export const ACCESS_PRIVILEGED: AuthScope[] = [AuthScope.Access, AuthScope.AppPassPrivileged]

/**
 * Session-token auth as the reference PDS answers it: no token → 401 AuthenticationRequired; a token that
 * does not verify → 400 InvalidToken; an expired one → 400 ExpiredToken (which makes clients refresh);
 * a scope not allowed here (an app password on an account-settings method) → 400 InvalidToken.
 */
export class PdsAuth {
  readonly admin: AuthVerifier<AdminCredentials>

  constructor(
    private readonly tokens: SessionTokens,
    private readonly accounts: AccountManager,
    adminPassword: string,
  ) {
    this.admin = adminBasicAuth(adminPassword)
  }

  private bearer(ctx: AuthContext): string {
    const header = ctx.req.headers.authorization
    if (!header) throw new AuthRequiredError('Authentication Required', 'AuthenticationRequired', { missing: true })
    const token = parseAuthorization(ctx.req, 'Bearer')
    if (!token) throw new InvalidRequestError('Unexpected authorization type', 'InvalidToken')
    return token
  }

  private tokenError(err: unknown): never {
    if (err instanceof TokenError) {
      if (err.reason === 'expired') throw new InvalidRequestError('Token has expired', 'ExpiredToken')
      throw new InvalidRequestError(err.message, 'InvalidToken')
    }
    throw err
  }

  private async checkAccount(did: string, opts: VerifyOptions): Promise<Account> {
    const account = await this.accounts.getAccount(did, { includeDeactivated: true, includeTakenDown: true })
    if (!account) throw new ForbiddenError('Account not found', 'AccountNotFound')
    if (opts.checkTakedown && account.takedownRef) {
      throw new AuthRequiredError('Account has been taken down', 'AccountTakedown')
    }
    if (opts.checkDeactivated && account.deactivatedAt) {
      throw new AuthRequiredError('Account is deactivated', 'AccountDeactivated')
    }
    return account
  }

  access(scopes: AuthScope[], opts: VerifyOptions = {}): AuthVerifier<AccessCredentials> {
    return async (ctx) => {
      const token = this.bearer(ctx)
      let payload
      try {
        payload = this.tokens.verify(token, 'at+jwt')
      } catch (err) {
        this.tokenError(err)
      }
      if (!scopes.includes(payload.scope)) throw new InvalidRequestError('Bad token scope', 'InvalidToken')
      await this.checkAccount(payload.sub, opts)
      return { credentials: { type: 'access', did: payload.sub, scope: payload.scope } }
    }
  }

  /**
   * For public endpoints that show more to the account itself or to an admin (a deactivated account's
   * own repo, e.g. to export it when moving away): the caller's session or admin credentials when they
   * verify, else null. Never refuses: a bad or expired token just counts as nobody.
   */
  viewer(): AuthVerifier<ViewerCredentials> {
    const access = this.access(ACCESS_STANDARD)
    return async (ctx) => {
      const header = ctx.req.headers.authorization
      if (!header) return { credentials: null }
      try {
        return /^basic /i.test(String(header)) ? await this.admin(ctx) : await access(ctx)
      } catch {
        return { credentials: null }
      }
    }
  }

  /** Refresh tokens (refreshSession, deleteSession); expired ones may be accepted for deleteSession. */
  refresh(opts: { allowExpired?: boolean } = {}): AuthVerifier<RefreshCredentials> {
    return async (ctx) => {
      const token = this.bearer(ctx)
      let payload
      try {
        payload = this.tokens.verify(token, 'refresh+jwt', { allowExpired: opts.allowExpired })
      } catch (err) {
        this.tokenError(err)
      }
      if (payload.scope !== AuthScope.Refresh || !payload.jti) {
        throw new InvalidRequestError('Bad token scope', 'InvalidToken')
      }
      return { credentials: { type: 'refresh', did: payload.sub, tokenId: payload.jti } }
    }
  }
}

/** Who is looking at a public endpoint: the account itself (a session), an admin, or nobody known. */
export type ViewerCredentials = AccessCredentials | AdminCredentials | null

export const isFullAccess = (scope: AuthScope) => scope === AuthScope.Access
