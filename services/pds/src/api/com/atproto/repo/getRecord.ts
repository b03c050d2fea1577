import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'
import { readableRepo } from '../../../../repo/access.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.repo.getRecord', {
    handler: async ({ params }) => {
      const { repo: repoParam, collection, rkey, cid } = params as { repo: string; collection: string; rkey: string; cid?: string }
      const found = await readableRepo(ctx, repoParam)
      const record = found?.repo.getRecord(collection, rkey, { cid })
      if (!found || !record) {
        throw new InvalidRequestError(`Could not locate record: at://${repoParam}/${collection}/${rkey}`, 'RecordNotFound')
      }
      return { encoding: 'application/json', body: { uri: record.uri, cid: record.cid, value: record.value } }
    },
  })
}
