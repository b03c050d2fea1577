import { createServiceJwt } from '@stratos/core/auth'
import type { XrpcServer } from '@stratos/core/xrpc'
import { ACCESS_STANDARD, assertRpc } from '../../../../auth.js'
import { AuthScope } from '../../../../account/tokens.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

/** Methods whose tokens only a full or privileged session may mint. */
const PRIVILEGED_METHODS = new Set([
  'com.atproto.server.createAccount',
  'com.atproto.server.getServiceAuth',
  'com.atproto.identity.requestPlcOperationSignature',
  'com.atproto.identity.signPlcOperation',
  'com.atproto.server.deleteAccount',
  'com.atproto.server.deactivateAccount',
  'com.atproto.server.activateAccount',
  'com.atproto.server.updateEmail',
  'com.atproto.server.createAppPassword',
])

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
      if (scope === AuthScope.AppPass && (!lxm || PRIVILEGED_METHODS.has(lxm))) {
        throw new InvalidRequestError(lxm ? `insufficient access to request a token for ${lxm}` : 'a method-less token needs a full session')
      }
      const keypair = await ctx.repoWriter.signingKey(did)
      const token = await createServiceJwt({ iss: did, aud, lxm: lxm ?? null, keypair, exp })
      return { encoding: 'application/json', body: { token } }
    },
  })
}
