import type { XrpcServer } from '@stratos/core/xrpc'
import { getHandle } from '@stratos/core/identity'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'
import { readableRepo } from '../../../../repo/access.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.repo.describeRepo', {
    handler: async ({ params }) => {
      const repoParam = params.repo as string
      const found = await readableRepo(ctx, repoParam)
      if (!found) throw new InvalidRequestError(`Could not find user: ${repoParam}`)
      const { account, repo } = found
      const didDoc = await ctx.idResolver.resolveDid(account.did).catch(() => null)
      const handle = account.handle ?? 'handle.invalid'
      return {
        encoding: 'application/json',
        body: {
          handle,
          did: account.did,
          didDoc: didDoc ?? {},
          collections: repo.listCollections(),
          handleIsCorrect: !!didDoc && getHandle(didDoc) === account.handle,
        },
      }
    },
  })
}
