import { generateKeypair } from '@stratos/core/crypto'
import type { DidDocument, IdentityResolver } from '@stratos/core/identity'
import { describe, expect, it } from 'vitest'
import { Identities, IdentityLookupError } from '../src/ingest/identities.js'

const DID = 'did:plc:identitiescache00000000'

async function didDoc(handle: string, pds: string): Promise<{ doc: DidDocument; key: string }> {
  const key = (await generateKeypair()).did()
  const doc = {
    id: DID,
    alsoKnownAs: [`at://${handle}`],
    verificationMethod: [{ id: `${DID}#atproto`, type: 'Multikey', controller: DID, publicKeyMultibase: key.slice('did:key:'.length) }],
    service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: pds }],
  } as unknown as DidDocument
  return { doc, key }
}

/** A resolver stand-in that hands back whatever document it currently holds (the same object each time). */
function stubResolver(initial: DidDocument | null) {
  const state = { doc: initial, calls: 0, invalidations: 0 }
  const resolver = {
    async resolveDid() {
      state.calls++
      return state.doc
    },
    async invalidate() {
      state.invalidations++
    },
  } as unknown as IdentityResolver
  return { state, resolver }
}

describe('Identities: parsed identity cache', () => {
  it('parses a cached document once, re-parses a new one, drops the entry on refresh and tombstone', async () => {
    const first = await didDoc('alice.test', 'https://pds-one.example.com')
    const { state, resolver } = stubResolver(first.doc)
    const ids = new Identities(resolver)

    const a = await ids.resolve(DID)
    expect(a).toEqual({
      did: DID,
      handle: 'alice.test',
      signingKey: first.key,
      pdsEndpoint: 'https://pds-one.example.com',
      pdsHost: 'pds-one.example.com',
    })
    expect(Object.isFrozen(a)).toBe(true)
    // same document object → the same parsed identity, no re-parse
    expect(await ids.resolve(DID)).toBe(a)
    expect(await ids.resolve(DID, true)).toBe(a)
    expect(state.calls).toBe(3)

    // the resolver now holds another document (key rotated, moved): parsed again
    const second = await didDoc('alice2.test', 'https://pds-two.example.com:2583')
    state.doc = second.doc
    const b = await ids.resolve(DID)
    expect(b).not.toBe(a)
    expect(b).toMatchObject({ signingKey: second.key, handle: 'alice2.test', pdsHost: 'pds-two.example.com:2583' })

    // #identity: refresh invalidates the resolver's document and the parsed entry
    const c = await ids.refresh(DID)
    expect(state.invalidations).toBe(1)
    expect(c).not.toBe(b)
    expect(c).toEqual(b)
    expect(ids.parsedCount).toBe(1)

    // tombstoned: not found, and nothing stale kept
    state.doc = null
    await expect(ids.resolve(DID)).rejects.toMatchObject({ reason: 'identity-not-found' })
    expect(ids.parsedCount).toBe(0)
  })

  it('does not cache an invalid document, and bounds the number of entries', async () => {
    const bad = { id: 'did:plc:someoneelse000000000000' } as unknown as DidDocument
    const { resolver } = stubResolver(bad)
    const ids = new Identities(resolver, 2)
    await expect(ids.resolve(DID)).rejects.toBeInstanceOf(IdentityLookupError)
    expect(ids.parsedCount).toBe(0)

    const docs = new Map<string, DidDocument>()
    for (const n of ['a', 'b', 'c']) {
      const did = `did:plc:${n.repeat(24)}`
      const { doc } = await didDoc('bob.test', 'https://pds.example.com')
      docs.set(did, { ...doc, id: did } as DidDocument)
    }
    const many = new Identities(
      { resolveDid: async (did: string) => docs.get(did) ?? null, invalidate: async () => undefined } as unknown as IdentityResolver,
      2,
    )
    for (const did of docs.keys()) expect((await many.resolve(did)).did).toBe(did)
    expect(many.parsedCount).toBe(2)
  })
})
