import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.createInviteCode', {
    auth: ctx.auth.admin,
    handler: async ({ input }) => {
      const { useCount, forAccount } = input!.body as { useCount: number; forAccount?: string }
      if (!Number.isInteger(useCount) || useCount < 1) throw new InvalidRequestError('useCount must be at least 1')
      const [created] = await ctx.accounts.createInviteCodes({
        forAccounts: [forAccount ?? 'admin'],
        count: 1,
        useCount,
        createdBy: 'admin',
      })
      return { encoding: 'application/json', body: { code: created!.codes[0] } }
    },
  })
}
