import type { XrpcServer } from '@stratos/core/xrpc'
import { recordView } from '../../../../actor-store/record-json.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'
import { readableRepo } from '../../../../repo/access.js'
import { jsonText } from '../../../../util/json-output.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.repo.getRecord', {
    handler: async ({ params }) => {
      const { repo: repoParam, collection, rkey, cid } = params as { repo: string; collection: string; rkey: string; cid?: string }
      const found = await readableRepo(ctx, repoParam)
      const record = found?.repo.getRecordJson(collection, rkey, { cid })
      if (!found || !record) {
        throw new InvalidRequestError(`Could not locate record: at://${repoParam}/${collection}/${rkey}`, 'RecordNotFound')
      }
      return jsonText(recordView(record.uri, record.cid, record.json))
    },
  })
}
