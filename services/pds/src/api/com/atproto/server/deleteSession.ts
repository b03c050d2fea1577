import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.deleteSession', {
    auth: ctx.auth.refresh({ allowExpired: true }),
    handler: async ({ auth }) => {
      await ctx.accounts.revokeRefreshToken(auth.credentials.tokenId)
    },
  })
}
