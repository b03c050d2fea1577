import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.createInviteCodes', {
    auth: ctx.auth.admin,
    handler: async ({ input }) => {
      const { codeCount, useCount, forAccounts } = input!.body as { codeCount: number; useCount: number; forAccounts?: string[] }
      if (!Number.isInteger(useCount) || useCount < 1) throw new InvalidRequestError('useCount must be at least 1')
      if (!Number.isInteger(codeCount) || codeCount < 1 || codeCount > 1000) {
        throw new InvalidRequestError('codeCount must be between 1 and 1000')
      }
      const codes = await ctx.accounts.createInviteCodes({
        forAccounts: forAccounts && forAccounts.length > 0 ? forAccounts : ['admin'],
        count: codeCount,
        useCount,
        createdBy: 'admin',
      })
      return { encoding: 'application/json', body: { codes } }
    },
  })
}
