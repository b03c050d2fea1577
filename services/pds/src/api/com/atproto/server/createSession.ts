import type { XrpcServer } from '@stratos/core/xrpc'
import { sessionOutput, didDocForSession } from '../../../../account/views.js'
import type { AppContext } from '../../../../context.js'
import { createSessionLimits } from '../../../../rate-limits.js'
import { AuthRequiredError } from '../../../../errors.js'

interface Input {
  identifier: string
  password: string
  allowTakendown?: boolean
}

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.createSession', {
    rateLimit: createSessionLimits,
    handler: async ({ input }) => {
      const { identifier, password } = input!.body as Input
      const { account, appPassword } = await ctx.accounts.login(identifier, password)
      if (account.takedownRef) throw new AuthRequiredError('Account has been taken down', 'AccountTakedown')
      const session = await ctx.accounts.createSession(account.did, appPassword)
      const didDoc = await didDocForSession(ctx, account.did)
      return {
        encoding: 'application/json',
        body: { ...session, ...sessionOutput(account, { includeEmail: !appPassword, didDoc }) },
      }
    },
  })
}
