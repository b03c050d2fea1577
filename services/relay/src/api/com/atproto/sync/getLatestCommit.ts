import type { RelayContext } from '../../../../context.js'
import { servableAccount } from '../../../util.js'

/** com.atproto.sync.getLatestCommit: the last verified commit of an account. */
export default function (ctx: RelayContext): void {
  ctx.xrpc.method('com.atproto.sync.getLatestCommit', {
    handler: ({ params }) => {
      const a = servableAccount(ctx, params.did as string)
      return { encoding: 'application/json', body: { cid: a.commitCid, rev: a.rev } }
    },
  })
}
