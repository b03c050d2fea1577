import { InvalidRequestError } from '@stratos/core/xrpc'
import { accountStatus } from '../../../../accounts/account-store.js'
import type { RelayContext } from '../../../../context.js'

/** com.atproto.sync.getRepoStatus: hosting status as the relay sees it (operator takedown over upstream status). */
export default function (ctx: RelayContext): void {
  ctx.xrpc.method('com.atproto.sync.getRepoStatus', {
    handler: ({ params }) => {
      const did = params.did as string
      const a = ctx.accounts.get(did)
      if (!a) throw new InvalidRequestError(`Could not find repo for DID: ${did}`, 'RepoNotFound')
      const s = accountStatus(a)
      const body: Record<string, unknown> = { did, active: s.active }
      if (s.status) body.status = s.status
      else if (a.syncStatus === 'desynchronized') body.status = 'desynchronized'
      if (s.active && a.rev) body.rev = a.rev
      return { encoding: 'application/json', body }
    },
  })
}
