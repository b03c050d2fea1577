import type { OAuthProvider } from '@atproto/oauth-provider/provider'
import { OAuthError, UseDpopNonceError, WWWAuthenticateError } from '@atproto/oauth-provider/errors'
import { ScopeMissingError, ScopePermissionsTransition } from '@atproto/oauth-scopes'
import { adminBasicAuth, parseAuthorization, XRPCError, type AdminCredentials, type AuthContext, type AuthVerifier } from '@stratos/core/xrpc'
import type { Account, AccountManager } from './account/manager.js'
import { AuthScope, TokenError, type SessionTokens } from './account/tokens.js'
import { AuthRequiredError, ForbiddenError, InvalidRequestError } from './errors.js'

export interface AccessCredentials {
  type: 'access'
  did: string
  scope: AuthScope
  /** set when the request came with an OAuth access token (Authorization: DPoP) */
  oauth?: OAuthGrant
  /** the account as read while verifying this request (so the handler need not read it again) */
  account?: Account
}

/** What an OAuth access token grants: the client and its permissions (granular and transition scopes). */
export interface OAuthGrant {
  clientId: string
  scope: string
  permissions: ScopePermissionsTransition
}

type PermissionCheck = (p: ScopePermissionsTransition, ctx: AuthContext) => void

const identityAny: PermissionCheck = (p) => p.assertIdentity({ attr: '*' })
const emailManage: PermissionCheck = (p) => p.assertAccount({ attr: 'email', action: 'manage' })
const statusManage: PermissionCheck = (p) => p.assertAccount({ attr: 'status', action: 'manage' })

/**
 * Methods that need a permission beyond `atproto` when called with an OAuth token. A method that takes
 * a full-password session (account settings) and is not listed here is refused to OAuth tokens (app
 * passwords, invite codes, account deletion: those stay with the account's own password).
 */
const OAUTH_METHOD_PERMISSIONS: Record<string, PermissionCheck> = {
  'com.atproto.repo.uploadBlob': (p, ctx) => {
    const mime = String(ctx.req.headers['content-type'] ?? 'application/octet-stream').split(';')[0]!.trim()
    p.assertBlob({ mime })
  },
  'com.atproto.identity.updateHandle': (p) => p.assertIdentity({ attr: 'handle' }),
  'com.atproto.identity.requestPlcOperationSignature': identityAny,
  'com.atproto.identity.signPlcOperation': identityAny,
  'com.atproto.identity.submitPlcOperation': identityAny,
  'com.atproto.identity.getRecommendedDidCredentials': identityAny,
  'com.atproto.server.requestEmailUpdate': emailManage,
  'com.atproto.server.updateEmail': emailManage,
  'com.atproto.server.requestEmailConfirmation': emailManage,
  'com.atproto.server.confirmEmail': emailManage,
  'com.atproto.server.deactivateAccount': statusManage,
  'com.atproto.server.activateAccount': statusManage,
}

/** A missing OAuth permission, answered as the reference PDS does: 403 ScopeMissingError. */
export function scopeError(err: unknown): never {
  if (err instanceof ScopeMissingError) throw new XRPCError(403, 'ScopeMissingError', err.message)
  throw err
}

/** Refuses a repo write an OAuth token was not granted (`repo:<collection>?action=...`). */
export function assertRepoWrite(creds: AccessCredentials, collection: string, action: 'create' | 'update' | 'delete'): void {
  if (!creds.oauth) return
  try {
    creds.oauth.permissions.assertRepo({ collection, action })
  } catch (err) {
    scopeError(err)
  }
}

/** Refuses a call to another service an OAuth token was not granted (`rpc:<nsid>?aud=...`). */
export function assertRpc(creds: AccessCredentials, aud: string, lxm: string): void {
  if (!creds.oauth) return
  try {
    creds.oauth.permissions.assertRpc({ aud, lxm })
  } catch (err) {
    scopeError(err)
  }
}

/** An OAuth library error as an XRPC error: same status, the OAuth error code, WWW-Authenticate kept. */
function oauthXrpcError(err: unknown): unknown {
  const e = err instanceof UseDpopNonceError ? err.toWwwAuthenticateError() : err
  if (e instanceof WWWAuthenticateError) {
    return new XRPCError(e.status, e.error, e.error_description, { 'WWW-Authenticate': e.wwwAuthenticateHeader })
  }
  if (e instanceof OAuthError) return new XRPCError(e.status, e.error, e.error_description)
  return err
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
    private readonly service: { did: string; publicUrl: string; oauth: () => OAuthProvider | null },
  ) {
    this.admin = adminBasicAuth(adminPassword)
  }

  /** `Authorization: DPoP <token>` with a DPoP proof: an access token from our authorization server. */
  private async oauthAccess(ctx: AuthContext, scopes: AuthScope[], opts: VerifyOptions): Promise<AccessCredentials> {
    const provider = this.service.oauth()
    if (!provider) throw new InvalidRequestError('Unexpected authorization type', 'InvalidToken')
    const url = new URL(ctx.req.url ?? '/', this.service.publicUrl)
    let payload
    try {
      payload = await provider.authenticateRequest(ctx.req.method ?? 'GET', url, ctx.req.headers, {
        audience: [this.service.did],
        scope: ['atproto'],
      })
    } catch (err) {
      throw oauthXrpcError(err)
    }
    const did = payload.sub
    const scope = payload.scope ?? ''
    const permissions = new ScopePermissionsTransition(scope)
    const nsid = ctx.nsid ?? url.pathname.replace(/^\/xrpc\//, '')
    const check = OAUTH_METHOD_PERMISSIONS[nsid]
    if (check) {
      try {
        check(permissions, ctx)
      } catch (err) {
        scopeError(err)
      }
    } else if (!scopes.includes(AuthScope.AppPass)) {
      // account settings a full-password session is needed for
      throw new InvalidRequestError('Bad token scope', 'InvalidToken')
    }
    const account = await this.checkAccount(did, opts)
    return {
      type: 'access',
      did,
      scope: AuthScope.AppPass,
      oauth: { clientId: String(payload.client_id ?? ''), scope, permissions },
      account,
    }
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
      if (/^dpop /i.test(String(ctx.req.headers.authorization ?? ''))) {
        return { credentials: await this.oauthAccess(ctx, scopes, opts) }
      }
      const token = this.bearer(ctx)
      let payload
      try {
        payload = this.tokens.verify(token, 'at+jwt')
      } catch (err) {
        this.tokenError(err)
      }
      if (!scopes.includes(payload.scope)) throw new InvalidRequestError('Bad token scope', 'InvalidToken')
      const account = await this.checkAccount(payload.sub, opts)
      return { credentials: { type: 'access', did: payload.sub, scope: payload.scope, account } }
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
