import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.admin.disableInviteCodes', {
    auth: ctx.auth.admin,
    handler: async ({ input }) => {
      const { codes, accounts } = (input?.body ?? {}) as { codes?: string[]; accounts?: string[] }
      await ctx.settings.disableInviteCodes({ codes, accounts })
    },
  })
}
