import type { XrpcServer } from '@stratos/core/xrpc'
import { sessionOutput, didDocForSession } from '../../../../account/views.js'
import { ACCESS_STANDARD, isFullAccess } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.getSession', {
    auth: ctx.auth.access(ACCESS_STANDARD, { checkTakedown: true }),
    handler: async ({ auth }) => {
      const { did, scope } = auth.credentials
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true })
      if (!account) throw new InvalidRequestError(`Could not find user info for account: ${did}`)
      const didDoc = await didDocForSession(ctx, did)
      return {
        encoding: 'application/json',
        body: sessionOutput(account, {
          // an OAuth token sees the email with account:email (or transition:email)
          includeEmail: auth.credentials.oauth
            ? auth.credentials.oauth.permissions.allowsAccount({ attr: 'email', action: 'read' })
            : isFullAccess(scope),
          didDoc,
        }),
      }
    },
  })
}
