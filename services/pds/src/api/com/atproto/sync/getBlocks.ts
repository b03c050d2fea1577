import { CID } from 'multiformats/cid'
import { writeCar } from '@stratos/core/repo'
import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'
import { syncRepo } from '../../../../repo/access.js'

/** Blocks of a repository by CID, as a CAR without roots. Any CID not held → BlockNotFound. */
export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.sync.getBlocks', {
    auth: ctx.auth.viewer(),
    handler: async ({ params, auth }) => {
      const { did } = params as { did: string }
      const raw = (params as { cids?: string[] | string }).cids ?? []
      const list = Array.isArray(raw) ? raw : [raw]
      const cids = list.map((c) => {
        try {
          return CID.parse(c)
        } catch {
          throw new InvalidRequestError(`Invalid CID: ${c}`)
        }
      })
      const { repo } = await syncRepo(ctx, did, auth.credentials)
      const { blocks, missing } = repo.getBlocks(cids)
      if (missing.length > 0) {
        throw new InvalidRequestError(`Could not find cids: ${missing.map((c) => c.toString()).join(', ')}`, 'BlockNotFound')
      }
      return { encoding: 'application/vnd.ipld.car', body: writeCar(null, blocks) }
    },
  })
}
