import type { XrpcServer } from '@stratos/core/xrpc'
import { sendEmailToken } from '../../../../account/lifecycle.js'
import type { AppContext } from '../../../../context.js'

/** Mails a reset token to the address; answers the same whether or not an account has it. */
export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.requestPasswordReset', {
    rateLimit: [
      { points: 15, durationMs: 60 * 60 * 1000 },
      { points: 50, durationMs: 24 * 60 * 60 * 1000 },
    ],
    handler: async ({ input }) => {
      const { email } = input!.body as { email: string }
      const account = await ctx.accounts.getAccountByEmail(email.trim())
      if (!account || account.takedownRef) return
      await sendEmailToken(ctx, account, 'reset_password')
    },
  })
}
