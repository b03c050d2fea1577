import { describe, expect, it } from 'vitest'
import { Secp256k1Keypair } from '@atproto/crypto'
import { MemoryBlockstore, Repo, WriteOpAction, blocksToCarFile } from '@atproto/repo'
import { validateRecord } from '@stratos/core/lexicon'
import { surelyValid } from '../src/ingest/fast-valid.js'
import { runRepoTask } from '../src/ingest/repo-verify.js'

const B32 = 'abcdefghijklmnopqrstuvwxyz234567'
/** a deterministic pseudo-random source (the same cases each run) */
function rng(seed: number) {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}
const rand = rng(42)
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!
const b32 = (n: number) => Array.from({ length: n }, () => pick([...B32])).join('')
const did = () => `did:plc:${b32(24)}`
const cid = () => `bafyrei${pick([...'abcdefgh'])}${b32(50)}${pick([...'aeimquy4'])}`
const tid = () => (rand() < 0.5 ? pick([...'234567abcdefghij']) + b32(12) : Array.from({ length: 1 + Math.floor(rand() * 64) }, () => pick([...'abcdefghijklmnopqrstuvwxyz0123456789'])).join(''))
const uri = () => `at://${did()}/app.bsky.feed.${pick(['post', 'generator'])}/${tid()}`
const two = (n: number) => String(n).padStart(2, '0')
const datetime = () =>
  `${1900 + Math.floor(rand() * 200)}-${two(1 + Math.floor(rand() * 12))}-${two(1 + Math.floor(rand() * 28))}T${two(Math.floor(rand() * 24))}:${two(Math.floor(rand() * 60))}:${two(Math.floor(rand() * 60))}${pick(['', '.1', '.12', '.123'])}Z`

/** One change that may or may not leave the record valid (the library decides). */
function mutate(r: Record<string, unknown>): Record<string, unknown> {
  const out = structuredClone(r) as Record<string, any>
  const ref = typeof out.subject === 'object' ? out.subject : null
  switch (Math.floor(rand() * 16)) {
    case 0:
      out.createdAt = pick(['2024-02-30T00:00:00Z', '2023-02-29T12:00:00Z', '0000-01-01T00:00:00Z', '2024-01-01T00:00:00+00:00', '2024-01-01T00:00:00.1234Z', '2024-01-01 00:00:00Z', '2024-1-01T00:00:00Z', 'now', '', '2024-01-01T24:00:00Z', '2024-01-01T00:00:60Z'])
      break
    case 1:
      out.createdAt = datetime()
      break
    case 2:
      if (ref) ref.cid = pick([`bafyrei${b32(52)}`, `bafyrei${b32(51)}`, `bafyrei${b32(53)}`, `bafkrei${b32(52)}`, `Bafyrei${b32(52)}`, 'bafyreib', `bafyrei${b32(51)}${pick([...B32])}`])
      else out.subject = pick([`did:web:${b32(8)}.com`, `did:plc:${b32(23)}`, `did:plc:${b32(25)}`, `did:plc:${b32(24).toUpperCase()}`, 'alice.test', 42])
      break
    case 3:
      if (ref) ref.uri = pick([`at://${did()}/app.bsky.feed.post/${b32(65)}`, `at://${did()}/app.bsky.feed.post/`, `at://${did()}/app.bsky.feed.post/ab-c`, `at://${did()}/app.bsky.feed.post/AB`, `at://${did()}/app.bsky.feed.post/${tid()}x`, `at://did:web:a.com/app.bsky.feed.post/${tid()}`, `at://${did()}/app.bsky.feed.like/${tid()}`, `at://${did()}`, `at:/${did()}/app.bsky.feed.post/${tid()}`, `https://x/${tid()}`])
      break
    case 4:
      out.extra = pick([1, 'x', null, { a: 1 }])
      break
    case 5:
      delete out.createdAt
      break
    case 6:
      delete out.subject
      break
    case 7:
      if (ref) ref.extra = 1
      break
    case 8:
      if (ref) delete ref.cid
      break
    case 9:
      out.via = pick([{ uri: uri(), cid: cid() }, { uri: uri() }, 'x', { uri: uri(), cid: cid(), $type: 'com.atproto.repo.strongRef' }])
      break
    case 10:
      if (ref) ref.$type = 'com.atproto.repo.strongRef'
      break
    case 11:
      out.$type = pick(['app.bsky.feed.post', 'app.bsky.feed.like', 'app.bsky.graph.follow', 'app.bsky.feed.repost'])
      break
    case 12:
      out.subject = pick([null, [], 'x', { uri: 1, cid: 2 }])
      break
    case 13:
      out.createdAt = 1700000000000
      break
    default:
      break
  }
  return out
}

const make = (collection: string): Record<string, unknown> =>
  collection === 'app.bsky.graph.follow'
    ? { $type: collection, subject: did(), createdAt: datetime() }
    : { $type: collection, subject: { uri: uri(), cid: cid() }, createdAt: datetime() }

const COLLECTIONS = ['app.bsky.feed.like', 'app.bsky.feed.repost', 'app.bsky.graph.follow']

describe('surelyValid (the backfill check of likes, reposts and follows) against @atproto/lexicon', () => {
  it('says valid only for records the library accepts, and does for the usual ones', () => {
    let decided = 0
    let cases = 0
    for (let i = 0; i < 6000; i++) {
      const collection = pick(COLLECTIONS)
      let r = make(collection)
      for (let m = Math.floor(rand() * 3); m > 0; m--) r = mutate(r)
      cases++
      if (!surelyValid(collection, r)) continue
      decided++
      const lib = validateRecord(collection, r)
      if (lib.valid !== true) throw new Error(`fast path accepted what the library refuses: ${JSON.stringify(r)} (${String((lib as { message?: string }).message)})`)
    }
    // the plain records (most of the cases) take the fast path
    expect(decided).toBeGreaterThan(cases / 4)
    for (const c of COLLECTIONS) for (let i = 0; i < 200; i++) expect(surelyValid(c, make(c))).toBe(true)
  })

  it('leaves other collections and odd shapes to the library', () => {
    expect(surelyValid('app.bsky.feed.post', { $type: 'app.bsky.feed.post', text: 'hi', createdAt: '2024-01-01T00:00:00Z' })).toBe(false)
    const like = make('app.bsky.feed.like')
    expect(surelyValid('app.bsky.feed.like', { ...like, $type: 'app.bsky.feed.repost' })).toBe(false)
    expect(surelyValid('app.bsky.feed.like', { ...like, createdAt: '2024-02-30T00:00:00Z' })).toBe(false)
    expect(surelyValid('app.bsky.feed.like', { ...like, subject: { ...(like.subject as object), $type: 'com.atproto.repo.strongRef' } })).toBe(false)
    expect(surelyValid('app.bsky.graph.follow', { $type: 'app.bsky.graph.follow', subject: 'did:web:example.com', createdAt: '2024-01-01T00:00:00Z' })).toBe(false)
  })

  it('the repo check gives the same verdicts with it (an invalid like in a repo stays invalid)', async () => {
    const key = await Secp256k1Keypair.create()
    const repoDid = did()
    const storage = new MemoryBlockstore()
    const good = make('app.bsky.feed.like')
    const bad = { ...make('app.bsky.feed.like'), createdAt: 'yesterday' }
    const follow = make('app.bsky.graph.follow')
    const repo = await Repo.create(storage, repoDid, key, [
      { action: WriteOpAction.Create, collection: 'app.bsky.feed.like', rkey: '3kaaaaaaaaaa2', record: good as never },
      { action: WriteOpAction.Create, collection: 'app.bsky.feed.like', rkey: '3kaaaaaaaaaa3', record: bad as never },
      { action: WriteOpAction.Create, collection: 'app.bsky.graph.follow', rkey: '3kaaaaaaaaaa4', record: follow as never },
    ])
    const bytes = await blocksToCarFile(repo.cid, storage.blocks)
    const res = await runRepoTask({ car: bytes, did: repoDid, signingKey: key.did(), validate: true })
    expect(res.ok).toBe(true)
    if (!res.ok) return
    const byKey = new Map(res.records.map((r) => [r.rkey, r.valid]))
    expect(byKey.get('3kaaaaaaaaaa2')).toBe(true)
    expect(byKey.get('3kaaaaaaaaaa3')).toBe(false)
    expect(byKey.get('3kaaaaaaaaaa4')).toBe(true)
  })
})
