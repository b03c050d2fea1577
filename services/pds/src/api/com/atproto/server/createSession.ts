import type { XrpcServer } from '@stratos/core/xrpc'
import { sessionOutput, didDocForSession } from '../../../../account/views.js'
import type { AppContext } from '../../../../context.js'
import { consumeLoginLimit } from '../../../../rate-limits.js'
import { AuthRequiredError } from '../../../../errors.js'

interface Input {
  identifier: string
  password: string
  allowTakendown?: boolean
}

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.createSession', {
    handler: async ({ input, req, reply }) => {
      const { identifier, password } = input!.body as Input
      // the limit is keyed on the account the identifier names (handle, DID or email alike), after the
      // same normalisation the login uses, and on the client IP
      const target = await ctx.accounts.findLoginAccount(identifier)
      await consumeLoginLimit(ctx.cfg, server.rateLimitStore, { req, reply }, target?.did ?? `unknown:${ctx.accounts.normaliseIdentifier(identifier)}`)
      const { account, appPassword } = await ctx.accounts.login(identifier, password, target)
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
