/** Shapes shared by the API handlers. */
import { InvalidRequestError } from '@stratos/core/xrpc'
import { isValidDid } from '@stratos/core/syntax'
import type { StoredLabel } from '../label-store.js'

export const labelView = (s: StoredLabel) => ({ seq: s.seq, label: s.label })

/** A label subject: a DID (the account) or an at:// URI whose authority is a DID (a record). */
export function checkSubject(uri: string): void {
  if (uri.startsWith('did:')) {
    if (!isValidDid(uri)) throw new InvalidRequestError(`not a valid DID: ${uri}`)
    return
  }
  const m = /^at:\/\/(did:[^/]+)\/([^/]+)\/([^/]+)$/.exec(uri)
  if (!m || !isValidDid(m[1]!)) {
    throw new InvalidRequestError(`a label subject is a DID or an at://<did>/<collection>/<rkey> URI, got ${uri}`)
  }
}

/** A seq cursor ('' or absent = from the start). */
export function seqCursor(raw: unknown): number | undefined {
  if (raw === undefined || raw === '') return undefined
  if (typeof raw !== 'string' || !/^[0-9]+$/.test(raw)) throw new InvalidRequestError('cursor must be a label sequence number')
  return Number(raw)
}
