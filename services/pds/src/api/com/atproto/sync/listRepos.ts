import type { XrpcServer } from '@stratos/core/xrpc'
import { accountStatus, repoCursor } from '../../../../account/manager.js'
import type { AppContext } from '../../../../context.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.sync.listRepos', {
    handler: async ({ params }) => {
      const limit = (params.limit as number | undefined) ?? 500
      const rows = await ctx.accounts.listRepos({ limit, cursor: params.cursor as string | undefined })
      const repos = rows.map((r) => {
        const { active, status } = accountStatus(r)
        const out: Record<string, unknown> = { did: r.did, head: r.head, rev: r.rev, active }
        if (status) out.status = status
        return out
      })
      const body: Record<string, unknown> = { repos }
      const last = rows[rows.length - 1]
      if (last && rows.length === limit) body.cursor = repoCursor(last.createdAt, last.did)
      return { encoding: 'application/json', body }
    },
  })
}
