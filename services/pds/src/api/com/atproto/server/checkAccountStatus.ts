import type { XrpcServer } from '@stratos/core/xrpc'
import { checkDidDocForService } from '../../../../account/migration.js'
import { ACCESS_STANDARD } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

/**
 * The state of the caller's account here, for a migration's progress: the repo head, blocks, indexed
 * records, blobs the records use against those held, and whether the DID document points here
 * (validDid: atproto_pds, #atproto = the account's key, this PDS's rotation key for did:plc).
 */
export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.checkAccountStatus', {
    auth: ctx.auth.access(ACCESS_STANDARD),
    handler: async ({ auth }) => {
      const { did } = auth.credentials
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true, includeTakenDown: true })
      const repo = ctx.actorStore.get(did)
      const head = repo?.getHead()
      if (!account || !repo || !head) throw new InvalidRequestError(`Could not find repo: ${did}`, 'RepoNotFound')
      const key = await ctx.repoWriter.signingKey(did)
      const validDid = (await checkDidDocForService(ctx, did, key.did()).catch(() => ({ ok: false }))).ok
      return {
        encoding: 'application/json',
        body: {
          activated: !account.deactivatedAt,
          validDid,
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
