import type { RelayContext } from '../../../../context.js'
import { pageCursor } from '../../../util.js'

/**
 * com.atproto.sync.listReposByCollection: accounts with at least one record in a collection, in DID order,
 * from the relay's on-disk index (kept from verified commits and backfilled repos). Accounts taken down or
 * inactive upstream are left out (their index rows stay, so they are listed again once active).
 */
export default function (ctx: RelayContext): void {
  ctx.xrpc.method('com.atproto.sync.listReposByCollection', {
    handler: ({ params }) => {
      const limit = (params.limit as number | undefined) ?? 500
      const dids = ctx.collections.list(params.collection as string, pageCursor(params.cursor), limit)
      const body: Record<string, unknown> = { repos: dids.map((did) => ({ did })) }
      if (dids.length === limit) body.cursor = dids[dids.length - 1]
      return { encoding: 'application/json', body }
    },
  })
}
