import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.admin.getInviteCodes', {
    auth: ctx.auth.admin,
    handler: async ({ params }) => {
      const { sort, limit, cursor } = params as { sort?: string; limit?: number; cursor?: string }
      const page = await ctx.settings.listInviteCodes({ sort: sort === 'usage' ? 'usage' : 'recent', limit: limit ?? 100, cursor })
      const body: Record<string, unknown> = { codes: page.codes }
      if (page.cursor) body.cursor = page.cursor
      return { encoding: 'application/json', body }
    },
  })
}
