import { createServiceJwt } from '@stratos/core/auth'
import type { XrpcServer } from '@stratos/core/xrpc'
import { ACCESS_STANDARD, assertRpc } from '../../../../auth.js'
import { AuthScope } from '../../../../account/tokens.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'
import { PRIVILEGED_PREFIXES, PROTECTED_PREFIXES } from '../../../../proxy/index.js'

/**
 * Methods no session may mint a token for (account management acts on this PDS only; a token for it would
 * let another service act as the account here), as in the reference PDS.
 */
const PROTECTED_METHODS = new Set([
  'com.atproto.admin.sendEmail',
  'com.atproto.identity.requestPlcOperationSignature',
  'com.atproto.identity.signPlcOperation',
  'com.atproto.identity.updateHandle',
  'com.atproto.server.activateAccount',
  'com.atproto.server.confirmEmail',
  'com.atproto.server.createAppPassword',
  'com.atproto.server.deactivateAccount',
  'com.atproto.server.getAccountInviteCodes',
  'com.atproto.server.getServiceAuth',
  'com.atproto.server.getSession',
  'com.atproto.server.listAppPasswords',
  'com.atproto.server.requestAccountDelete',
  'com.atproto.server.requestEmailConfirmation',
  'com.atproto.server.requestEmailUpdate',
  'com.atproto.server.revokeAppPassword',
  'com.atproto.server.updateEmail',
  'com.atproto.server.deleteAccount',
])

/**
 * What an app password may not mint, following the proxy's rules: nothing in the account-management
 * namespaces (identity, server, admin, temp: e.g. createAccount for a migration, submitPlcOperation), and,
 * unless the app password is privileged, nothing for chat.bsky.* (direct messages).
 */
function appPasswordRefuses(lxm: string, privileged: boolean): boolean {
  if (PROTECTED_PREFIXES.some((p) => lxm.startsWith(p))) return true
  return !privileged && PRIVILEGED_PREFIXES.some((p) => lxm.startsWith(p))
}

const HOUR_S = 60 * 60
const MINUTE_S = 60

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.getServiceAuth', {
    auth: ctx.auth.access(ACCESS_STANDARD, { checkTakedown: true }),
    handler: async ({ auth, params }) => {
      const { did, scope } = auth.credentials
      const { aud, exp, lxm } = params as { aud: string; exp?: number; lxm?: string }
      const now = Math.floor(Date.now() / 1000)
      if (exp !== undefined) {
        if (exp <= now) throw new InvalidRequestError('expiration is in past', 'BadExpiration')
        if (exp - now > HOUR_S) throw new InvalidRequestError('cannot request a token for longer than an hour', 'BadExpiration')
        if (!lxm && exp - now > MINUTE_S) {
          throw new InvalidRequestError('cannot request a method-less token for longer than a minute', 'BadExpiration')
        }
      }
      assertRpc(auth.credentials, aud, lxm ?? '*')
      if (lxm && PROTECTED_METHODS.has(lxm)) {
        throw new InvalidRequestError(`cannot request a service auth token for the protected method ${lxm}`)
      }
      const appPass = scope === AuthScope.AppPass || scope === AuthScope.AppPassPrivileged
      if (appPass && (lxm ? appPasswordRefuses(lxm, scope === AuthScope.AppPassPrivileged) : scope === AuthScope.AppPass)) {
        throw new InvalidRequestError(lxm ? `insufficient access to request a token for ${lxm}` : 'a method-less token needs a full session')
      }
      const keypair = await ctx.repoWriter.signingKey(did)
      const token = await createServiceJwt({ iss: did, aud, lxm: lxm ?? null, keypair, exp })
      return { encoding: 'application/json', body: { token } }
    },
  })
}
