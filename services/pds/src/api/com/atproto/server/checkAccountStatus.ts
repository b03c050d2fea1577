import type { XrpcServer } from '@stratos/core/xrpc'
import { getVerificationKey } from '@stratos/core/identity'
import { ACCESS_STANDARD } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.checkAccountStatus', {
    auth: ctx.auth.access(ACCESS_STANDARD),
    handler: async ({ auth }) => {
      const { did } = auth.credentials
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true, includeTakenDown: true })
      const repo = ctx.actorStore.get(did)
      const head = repo?.getHead()
      if (!account || !repo || !head) throw new InvalidRequestError(`Could not find repo: ${did}`, 'RepoNotFound')
      const didDoc = await ctx.idResolver.resolveDid(did, { forceRefresh: true }).catch(() => null)
      const key = await ctx.repoWriter.signingKey(did)
      const docKey = didDoc ? getVerificationKey(didDoc) : undefined
      return {
        encoding: 'application/json',
        body: {
          activated: !account.deactivatedAt,
          validDid: !!didDoc && docKey === key.did(),
          repoCommit: head.cid.toString(),
          repoRev: head.rev,
          repoBlocks: repo.storage.stats().blocks,
          indexedRecords: repo.recordCount(),
          privateStateValues: 0,
          expectedBlobs: repo.expectedBlobCount(),
          importedBlobs: repo.importedBlobCount(),
        },
      }
    },
  })
}
