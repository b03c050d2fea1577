/**
 * Resynchronizing an account after a broken commit chain: fetch its whole repo from its PDS
 * (com.atproto.sync.getRepo), verify it (signature by the current key, complete and valid MST), and return
 * the commit the relay then announces with `#sync`.
 */
import { safeFetch } from '@stratos/core/identity'
import { BlockMap, verifyRepoCar, writeCar } from '@stratos/core/repo'
import type { CID } from '@stratos/core/data'

export interface ResyncResult {
  commitCid: CID
  rev: string
  data: CID
  /** CAR holding only the signed commit block (root = commit): the `blocks` of a #sync */
  commitCar: Uint8Array
  /** records per collection in the repo */
  collections: Map<string, number>
}

export interface ResyncOptions {
  allowPrivateAddresses: boolean
  maxBytes: number
  timeoutMs?: number
}

export class ResyncError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ResyncError'
  }
}

export async function fetchVerifiedRepo(
  pdsEndpoint: string,
  did: string,
  signingKey: string,
  opts: ResyncOptions,
): Promise<ResyncResult> {
  const url = new URL('/xrpc/com.atproto.sync.getRepo', pdsEndpoint)
  url.searchParams.set('did', did)
  let res
  try {
    res = await safeFetch(url, {
      timeoutMs: opts.timeoutMs ?? 60_000,
      maxBytes: opts.maxBytes,
      allowPrivateAddresses: opts.allowPrivateAddresses,
      headers: { accept: 'application/vnd.ipld.car' },
    })
  } catch (err) {
    throw new ResyncError(`fetching the repo of ${did} failed: ${(err as Error).message}`, { cause: err })
  }
  if (!res.ok) throw new ResyncError(`getRepo for ${did} answered HTTP ${res.status}`)
  let verified
  try {
    verified = await verifyRepoCar(res.body, did, signingKey, { limits: { maxBytes: opts.maxBytes } })
  } catch (err) {
    throw new ResyncError(`the repo of ${did} does not verify: ${(err as Error).message}`, { cause: err })
  }
  const commitBytes = verified.blocks.get(verified.commitCid)!
  const only = new BlockMap()
  only.set(verified.commitCid, commitBytes)
  const collections = new Map<string, number>()
  for (const r of verified.records) collections.set(r.collection, (collections.get(r.collection) ?? 0) + 1)
  return {
    collections,
    commitCid: verified.commitCid,
    rev: verified.commit.rev,
    data: verified.commit.data,
    commitCar: writeCar(verified.commitCid, only),
  }
}
