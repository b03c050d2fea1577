import type { ActorRepo } from './actor-repo.js'

/**
 * Takedowns of single records and blobs in an account's store. A taken-down record is left out of
 * getRecord / listRecords; a taken-down blob is not served by getBlob. The repo itself (and so its CAR
 * and the firehose) is unchanged: taking down a record is a hosting decision, not a repo write.
 */
export function getRecordTakedown(repo: ActorRepo, uri: string): { cid: string; takedownRef: string | null } | null {
  const row = repo.db.prepare('SELECT cid, takedownRef FROM record WHERE uri = ?').get(uri) as
    | { cid: string; takedownRef: string | null }
    | undefined
  return row ?? null
}

export function setRecordTakedown(repo: ActorRepo, uri: string, takedownRef: string | null): boolean {
  return repo.db.prepare('UPDATE record SET takedownRef = ? WHERE uri = ?').run(takedownRef, uri).changes > 0
}

export function getBlobTakedown(repo: ActorRepo, cid: string): { takedownRef: string | null } | null {
  const row = repo.db.prepare('SELECT takedownRef FROM blob WHERE cid = ?').get(cid) as { takedownRef: string | null } | undefined
  return row ?? null
}

export function setBlobTakedown(repo: ActorRepo, cid: string, takedownRef: string | null): boolean {
  return repo.db.prepare('UPDATE blob SET takedownRef = ? WHERE cid = ?').run(takedownRef, cid).changes > 0
}

/** A record the blob is used by (for the admin view of a blob subject). */
export function recordUsingBlob(repo: ActorRepo, cid: string): string | undefined {
  const row = repo.db.prepare('SELECT recordUri FROM record_blob WHERE blobCid = ? LIMIT 1').get(cid) as { recordUri: string } | undefined
  return row?.recordUri
}
