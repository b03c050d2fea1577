import { readFile } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { CID } from 'multiformats/cid'
import type { XrpcServer } from '@stratos/core/xrpc'
import { CarError, checkCommitSignature, decodeCommit, RepoVerifyError, verifyRepoCar } from '@stratos/core/repo'
import { importSigningKeyCandidates } from '../../../../account/migration.js'
import { ACCESS_FULL } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError, PayloadTooLargeError, XRPCError } from '../../../../errors.js'
import { BlobTooLargeError } from '../../../../blobstore.js'
import { readRootBlockFromFile } from '../../../../repo/car-file.js'

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
  // imports under way on this server (bounded: each one may hold a repo in memory while it is verified)
  const running = new Set<string>()
  server.method('com.atproto.repo.importRepo', {
    auth: ctx.auth.access(ACCESS_FULL, { checkTakedown: true }),
    bodyLimit: maxBytes,
    rawInput: 'stream',
    handler: async ({ auth, input }) => {
      if (!ctx.cfg.service.acceptingImports) throw new InvalidRequestError('Service is not accepting repo imports')
      const { did } = auth.credentials
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true })
      const repo = ctx.actorStore.get(did)
      if (!account || !repo) throw new InvalidRequestError(`Could not find repo: ${did}`, 'RepoNotFound')
      // a slot before the body is read: further imports are refused at once, their bodies never read
      if (running.has(did) || running.size >= ctx.cfg.maxConcurrentImports) {
        throw new XRPCError(429, 'RateLimitExceeded', 'Too many repository imports under way; retry later', { 'Retry-After': '10' })
      }
      running.add(did)
      try {
        // the body goes to a temp file as it arrives (memory stays flat however large it is)
        let key: string
        try {
          key = (await ctx.blobstore.putTemp(input!.body as Readable, maxBytes)).key
        } catch (err) {
          if (err instanceof BlobTooLargeError || err instanceof PayloadTooLargeError) {
            throw new PayloadTooLargeError(`Request body is larger than the limit of ${maxBytes} bytes`)
          }
          throw err
        }
        try {
          await importFromFile(ctx.blobstore.tempPath(key), did, repo)
        } finally {
          await ctx.blobstore.deleteTemp(key)
        }
      } finally {
        running.delete(did)
      }
    },
  })

  async function importFromFile(file: string, did: string, repo: NonNullable<ReturnType<AppContext['actorStore']['get']>>): Promise<void> {
      // which key signed it: the commit alone is enough to tell, read from the file before anything else
      let signer: string | undefined
      try {
        const { bytes: commitBytes } = await readRootBlockFromFile(file)
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

      // signed by the account: now the whole repo is read and verified (one import at a time per slot)
      const bytes = new Uint8Array(await readFile(file))
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
        const storeDurable = repo.durable()
        await ctx.accounts.updateRepoRoot(did, outcome.commit.cid.toString(), outcome.commit.rev)
        const now = await ctx.accounts.getAccount(did, { includeDeactivated: true })
        if (now && !now.deactivatedAt) {
          ctx.sequencer.sequenceSync(did, CID.asCID(outcome.commit.cid)!, outcome.commitBytes, outcome.commit.rev, storeDurable)
          await ctx.sequencer.durable()
        }
        await storeDurable
        ctx.logger.info(
          { did, records: outcome.records, created: outcome.created, updated: outcome.updated, deleted: outcome.deleted, missingBlobs: outcome.missingBlobs },
          'repo imported',
        )
      })
  }
}
