import type { XrpcServer } from '@stratos/core/xrpc'
import { accountStatus } from '../../../../account/manager.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.sync.getRepoStatus', {
    handler: async ({ params }) => {
      const did = params.did as string
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true, includeTakenDown: true })
      if (!account) throw new InvalidRequestError(`Could not find repo for DID: ${did}`, 'RepoNotFound')
      const { active, status } = accountStatus(account)
      const body: Record<string, unknown> = { did, active }
      if (status) body.status = status
      if (active) {
        const root = await ctx.accounts.getRepoRoot(did)
        if (root) body.rev = root.rev
      }
      return { encoding: 'application/json', body }
    },
  })
}
