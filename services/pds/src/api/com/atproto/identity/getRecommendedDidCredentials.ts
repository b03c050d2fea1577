import type { XrpcServer } from '@stratos/core/xrpc'
import { ACCESS_STANDARD } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

/** What the account's DID document should hold while it lives here (for a migration's PLC op). */
export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.identity.getRecommendedDidCredentials', {
    auth: ctx.auth.access(ACCESS_STANDARD),
    handler: async ({ auth }) => {
      const { did } = auth.credentials
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true, includeTakenDown: true })
      if (!account) throw new InvalidRequestError('Account not found')
      const signingKey = await ctx.repoWriter.signingKey(did)
      const rotationKeys = [ctx.plcRotationKey.did()]
      if (ctx.cfg.identity.recoveryDidKey) rotationKeys.unshift(ctx.cfg.identity.recoveryDidKey)
      return {
        encoding: 'application/json',
        body: {
          rotationKeys,
          alsoKnownAs: account.handle ? [`at://${account.handle}`] : [],
          verificationMethods: { atproto: signingKey.did() },
          services: { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: ctx.cfg.service.publicUrl } },
        },
      }
    },
  })
}
