import { CID } from 'multiformats/cid'
import type { XrpcServer } from '@stratos/core/xrpc'
import { CarError, checkCommitSignature, decodeCommit, readCarSync, RepoVerifyError, verifyRepoCar } from '@stratos/core/repo'
import { importSigningKeyCandidates } from '../../../../account/migration.js'
import { ACCESS_FULL } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

/**
 * Imports a whole repository (a CAR, as com.atproto.sync.getRepo exports it) into the caller's account,
 * replacing what it held: how an account moving here brings its data. The CAR must be a valid repo of
 * the caller's DID whose commit is signed by a key the DID has had (its current #atproto key, one from
 * its PLC history, or the key this PDS holds). Records keep their keys and CIDs; this PDS signs a new
 * commit over the same tree with its key for the account. Blobs the records use are listed by
 * listMissingBlobs until uploaded. Only a full (password) session may import. An active account's
 * import is announced with #sync; a deactivated (migrating) one announces nothing until activation.
 */
export default function (server: XrpcServer, ctx: AppContext) {
  const maxBytes = ctx.cfg.service.maxImportSize
  server.method('com.atproto.repo.importRepo', {
    auth: ctx.auth.access(ACCESS_FULL, { checkTakedown: true }),
    bodyLimit: maxBytes,
    rawInput: 'buffer',
    handler: async ({ auth, input }) => {
      if (!ctx.cfg.service.acceptingImports) throw new InvalidRequestError('Service is not accepting repo imports')
      const { did } = auth.credentials
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true })
      const repo = ctx.actorStore.get(did)
      if (!account || !repo) throw new InvalidRequestError(`Could not find repo: ${did}`, 'RepoNotFound')
      const buf = input!.body as Buffer
      const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)

      // which key signed it: the commit alone is enough to tell, before the full verification
      let signer: string | undefined
      try {
        const { roots, blocks } = readCarSync(bytes, { maxBytes })
        if (roots.length !== 1) throw new InvalidRequestError('expected one root')
        const commitBytes = blocks.get(roots[0]!)
        if (!commitBytes) throw new InvalidRequestError('The CAR does not hold its root (the commit)')
        const { commit, unsignedBytes } = decodeCommit(commitBytes)
        if (commit.did !== did) throw new InvalidRequestError(`The repo is ${commit.did}'s, not ${did}'s`)
        const accountKey = (await ctx.repoWriter.signingKey(did)).did()
        const candidates = await importSigningKeyCandidates(ctx, did, accountKey)
        signer = candidates.find((key) => checkCommitSignature(key, unsignedBytes, commit.sig))
        if (!signer) {
          throw new InvalidRequestError(`The repo's commit is not signed by any key ${did} has had (${candidates.length} checked)`)
        }
      } catch (err) {
        if (err instanceof InvalidRequestError) throw err
        if (err instanceof CarError) throw new InvalidRequestError(`Invalid CAR: ${err.message}`)
        throw new InvalidRequestError(`Invalid repo: ${(err as Error).message}`)
      }

      let verified
      try {
        verified = await verifyRepoCar(bytes, did, signer, { limits: { maxBytes } })
      } catch (err) {
        if (err instanceof RepoVerifyError) throw new InvalidRequestError(`Invalid repo (${err.reason}): ${err.message}`)
        throw err
      }

      const key = await ctx.repoWriter.signingKey(did)
      await repo.lock.run(async () => {
        const outcome = await repo.importRepoLocked(verified, key)
        await ctx.accounts.updateRepoRoot(did, outcome.commit.cid.toString(), outcome.commit.rev)
        const now = await ctx.accounts.getAccount(did, { includeDeactivated: true })
        if (now && !now.deactivatedAt) {
          ctx.sequencer.sequenceSync(did, CID.asCID(outcome.commit.cid)!, outcome.commitBytes, outcome.commit.rev)
        }
        ctx.logger.info(
          { did, records: outcome.records, created: outcome.created, updated: outcome.updated, deleted: outcome.deleted, missingBlobs: outcome.missingBlobs },
          'repo imported',
        )
      })
    },
  })
}
