import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'
import { readableRepo } from '../../../../repo/access.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.repo.listRecords', {
    handler: async ({ params }) => {
      const { repo: repoParam, collection, cursor, reverse } = params as {
        repo: string
        collection: string
        limit?: number
        cursor?: string
        reverse?: boolean
      }
      const limit = (params.limit as number | undefined) ?? 50
      const found = await readableRepo(ctx, repoParam)
      if (!found) throw new InvalidRequestError(`Could not find repo: ${repoParam}`)
      const rows = found.repo.listRecords({ collection, limit, cursor, reverse })
      const records = rows.filter((r) => r.value !== null).map((r) => ({ uri: r.uri, cid: r.cid, value: r.value }))
      const body: Record<string, unknown> = { records }
      if (rows.length === limit) body.cursor = rows[rows.length - 1]!.rkey
      return { encoding: 'application/json', body }
    },
  })
}
