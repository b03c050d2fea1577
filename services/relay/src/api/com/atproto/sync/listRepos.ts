import { accountStatus } from '../../../../accounts/account-store.js'
import type { RelayContext } from '../../../../context.js'
import { pageCursor } from '../../../util.js'

/** com.atproto.sync.listRepos: accounts the relay has a verified commit for, in DID order. */
export default function (ctx: RelayContext): void {
  ctx.xrpc.method('com.atproto.sync.listRepos', {
    handler: ({ params }) => {
      const limit = (params.limit as number | undefined) ?? 500
      const accounts = ctx.accounts.list(pageCursor(params.cursor), limit)
      const repos = []
      for (const a of accounts) {
        if (!a.rev || !a.commitCid) continue
        const s = accountStatus(a)
        const item: Record<string, unknown> = { did: a.did, head: a.commitCid, rev: a.rev, active: s.active }
        if (s.status) item.status = s.status
        repos.push(item)
      }
      const body: Record<string, unknown> = { repos }
      if (accounts.length === limit) body.cursor = accounts[accounts.length - 1]!.did
      return { encoding: 'application/json', body }
    },
  })
}
