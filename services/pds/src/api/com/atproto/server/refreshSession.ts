import type { XrpcServer } from '@stratos/core/xrpc'
import { sessionOutput, didDocForSession } from '../../../../account/views.js'
import type { AppContext } from '../../../../context.js'
import { AuthRequiredError, InvalidRequestError } from '../../../../errors.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.refreshSession', {
    auth: ctx.auth.refresh(),
    handler: async ({ auth }) => {
      const { did, tokenId } = auth.credentials
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true, includeTakenDown: true })
      if (!account) throw new InvalidRequestError(`Could not find user info for account: ${did}`)
      if (account.takedownRef) throw new AuthRequiredError('Account has been taken down', 'AccountTakedown')
      const rotated = await ctx.accounts.rotateRefreshToken(tokenId)
      if (rotated.did !== did) throw new InvalidRequestError('Token could not be verified', 'InvalidToken')
      const didDoc = await didDocForSession(ctx, did)
      return {
        encoding: 'application/json',
        body: {
          accessJwt: rotated.accessJwt,
          refreshJwt: rotated.refreshJwt,
          ...sessionOutput(account, { includeEmail: false, didDoc }),
        },
      }
    },
  })
}
