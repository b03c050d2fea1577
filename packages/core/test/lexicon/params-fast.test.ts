import { describe, expect, it, vi } from 'vitest'
import { lexicons, validateParams } from '@stratos/core/lexicon'

const DID = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
const CID = 'bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq'

const outcome = (nsid: string, query: string, generic: boolean) => {
  try {
    return { ok: validateParams(nsid, new URLSearchParams(query), lexicons, { generic }) }
  } catch (err) {
    return { error: (err as Error).message }
  }
}

/** Values for each string format, good and bad, spliced into every param of every method below. */
const VALUES = [
  DID,
  'did:web:example.com',
  'did:plc:',
  'did:PLC:abc',
  'alice.bsky.social',
  'ALICE.Test',
  'alice',
  '-bad-.test',
  'app.bsky.feed.post',
  'app.bsky',
  'com.example.fooBar',
  '3kznmn7xqxl22',
  'self',
  '.',
  '..',
  'a/b',
  'rkey with space',
  '',
  CID,
  'bafy-not-a-cid',
  `at://${DID}/app.bsky.feed.post/3kznmn7xqxl22`,
  'at://alice.test',
  'https://example.com',
  'é'.repeat(10),
  'x'.repeat(3000),
]

const METHODS = [
  'com.atproto.repo.getRecord', // at-identifier, nsid, record-key, cid (optional)
  'com.atproto.repo.describeRepo',
  'com.atproto.sync.getRecord',
  'com.atproto.sync.getBlob',
  'com.atproto.sync.getLatestCommit',
  'com.atproto.sync.getRepoStatus',
  'com.atproto.identity.resolveHandle',
  'app.bsky.actor.getProfile',
  'com.atproto.repo.listRecords', // has an integer and a boolean: the library alone
  'app.bsky.feed.getPostThread',
]

describe('validateParams fast path (plain string params)', () => {
  it('gives what @atproto/lexicon gives, result or error, for good and bad values', () => {
    let compared = 0
    for (const nsid of METHODS) {
      const props = Object.keys(((lexicons.getDef(nsid) as { parameters?: { properties?: object } })?.parameters?.properties ?? {}) as object)
      const base: Record<string, string> = {}
      for (const p of props) base[p] = p === 'collection' ? 'app.bsky.feed.post' : p === 'rkey' ? '3kznmn7xqxl22' : p === 'cid' ? CID : p === 'handle' ? 'alice.test' : p === 'uri' ? `at://${DID}/app.bsky.feed.post/3kznmn7xqxl22` : DID
      const queries: string[] = [new URLSearchParams(base).toString(), '', 'unknown=1']
      for (const p of props) {
        for (const v of VALUES) queries.push(new URLSearchParams({ ...base, [p]: v }).toString())
        const without = { ...base }
        delete without[p]
        queries.push(new URLSearchParams(without).toString())
        queries.push(`${new URLSearchParams(base).toString()}&${p}=${encodeURIComponent(base[p]!)}`) // given twice
        queries.push(`${new URLSearchParams(base).toString()}&extra=${encodeURIComponent(DID)}`)
      }
      for (const q of queries) {
        expect({ nsid, q, ...outcome(nsid, q, false) }).toEqual({ nsid, q, ...outcome(nsid, q, true) })
        compared++
      }
    }
    expect(compared).toBeGreaterThan(500)
  })

  it('leaves the library out for valid plain-string params, and keeps it for the rest', () => {
    const spy = vi.spyOn(lexicons, 'assertValidXrpcParams')
    try {
      const ok = validateParams('com.atproto.repo.getRecord', new URLSearchParams({ repo: DID, collection: 'app.bsky.feed.post', rkey: 'self' }))
      expect(ok).toEqual({ repo: DID, collection: 'app.bsky.feed.post', rkey: 'self' })
      expect(spy).not.toHaveBeenCalled()
      // a cid param given: the library checks it
      validateParams('com.atproto.repo.getRecord', new URLSearchParams({ repo: DID, collection: 'app.bsky.feed.post', rkey: 'self', cid: CID }))
      expect(spy).toHaveBeenCalledTimes(1)
      expect(() => validateParams('com.atproto.repo.getRecord', new URLSearchParams({ repo: 'not a did', collection: 'app.bsky.feed.post', rkey: 'self' }))).toThrow(
        /repo must be a valid did or a handle/,
      )
    } finally {
      spy.mockRestore()
    }
  })
})
