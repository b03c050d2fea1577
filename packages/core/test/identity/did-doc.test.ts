import { beforeAll, describe, expect, it } from 'vitest'
import { base58btc } from 'multiformats/bases/base58'
import { decompressPublicKey, generateKeypair, parseDidKey } from '@stratos/core/crypto'
import {
  DidDocumentError,
  getHandle,
  getServiceEndpoint,
  getVerificationKey,
  parseDidDocument,
  type DidDocument,
} from '@stratos/core/identity'
import { readInteropJson, reportVectors } from '../util/vectors.js'
import { loadIdentityOracle, type AtprotoIdentityOracle } from './oracle.js'

let ref: AtprotoIdentityOracle
beforeAll(async () => {
  ref = await loadIdentityOracle()
})

const DID = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'

async function sampleDocs(): Promise<DidDocument[]> {
  const k = await generateKeypair('k256')
  const p = await generateKeypair('p256')
  return [
    // as rendered by a PLC directory
    {
      '@context': ['https://www.w3.org/ns/did/v1'],
      id: DID,
      alsoKnownAs: ['at://atproto.com'],
      verificationMethod: [
        { id: `${DID}#atproto`, type: 'Multikey', controller: DID, publicKeyMultibase: k.did().slice(8) },
      ],
      service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: 'https://pds.example.com' }],
    },
    // relative ids, p256 key, extra entries before and after
    {
      id: 'did:web:alice.example.com',
      alsoKnownAs: ['at://alice.example.com', 'https://alice.example.com'],
      verificationMethod: [
        { id: '#other', type: 'Multikey', controller: 'did:web:alice.example.com', publicKeyMultibase: k.did().slice(8) },
        { id: '#atproto', type: 'Multikey', controller: 'did:web:alice.example.com', publicKeyMultibase: p.did().slice(8) },
      ],
      service: [
        { id: '#bsky_appview', type: 'BskyAppView', serviceEndpoint: 'https://api.example.com' },
        { id: 'did:web:alice.example.com#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: 'https://pds2.example.com:8443' },
      ],
    },
    // nothing atproto in it
    { id: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa', alsoKnownAs: [], verificationMethod: [], service: [] },
  ]
}

describe('parseDidDocument', () => {
  it('extracts handle, signing key and PDS like @atproto/identity does', async () => {
    const docs = await sampleDocs()
    for (const doc of docs) {
      const ours = parseDidDocument(doc)
      expect(ours.did).toBe(doc.id)
      expect(ours.signingKey).toBe(ref.getKey(doc))
      expect(ours.pdsEndpoint).toBe(ref.getPds(doc))
      expect(ours.handle).toBe(ref.getHandle(doc))
    }
    const first = parseDidDocument(docs[0]!)
    expect(first).toEqual({
      did: DID,
      handle: 'atproto.com',
      signingKey: `did:key:${docs[0]!.verificationMethod![0]!.publicKeyMultibase}`,
      pdsEndpoint: 'https://pds.example.com',
    })
    expect(parseDidDocument(docs[1]!).signingKey?.startsWith('did:key:zDna')).toBe(true)
    expect(parseDidDocument(docs[2]!)).toEqual({ did: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa' })
  })

  it('rejects a document whose id is not the expected DID, or that is not a document', () => {
    const doc = { id: 'did:plc:bbbbbbbbbbbbbbbbbbbbbbbb', alsoKnownAs: [] }
    expect(() => parseDidDocument(doc, DID)).toThrow(DidDocumentError)
    expect(() => parseDidDocument(doc, DID)).toThrow(/does not match/)
    expect(() => parseDidDocument(null)).toThrow(DidDocumentError)
    expect(() => parseDidDocument({ alsoKnownAs: [] })).toThrow(/no id/)
    expect(() => parseDidDocument({ id: DID, service: {} })).toThrow(/service is not an array/)
  })

  it('reads legacy Ecdsa*VerificationKey2019 keys (interop signature fixtures)', () => {
    const fixtures = readInteropJson<
      Array<{ didDocSuite: string; publicKeyDid: string; publicKeyMultibase: string }>
    >('crypto/signature-fixtures.json')
    let passed = 0
    for (const f of fixtures) {
      const doc: DidDocument = {
        id: DID,
        verificationMethod: [{ id: '#atproto', type: f.didDocSuite, controller: DID, publicKeyMultibase: f.publicKeyMultibase }],
      }
      const key = getVerificationKey(doc)
      expect(key).toBe(f.publicKeyDid)
      expect(key).toBe(ref.getKey(doc))
      passed++
    }
    reportVectors('signature-fixtures.json (legacy DID doc keys)', passed, fixtures.length)
  })

  it('accepts an uncompressed legacy key and rejects garbage keys', async () => {
    const k = await generateKeypair('k256')
    const { publicKey } = parseDidKey(k.did())
    const uncompressed = decompressPublicKey('k256', publicKey)
    const legacy = (mb: string): DidDocument => ({
      id: DID,
      verificationMethod: [{ id: '#atproto', type: 'EcdsaSecp256k1VerificationKey2019', controller: DID, publicKeyMultibase: mb }],
    })
    expect(getVerificationKey(legacy(base58btc.encode(uncompressed)))).toBe(k.did())
    expect(getVerificationKey(legacy('zzzz'))).toBeUndefined()
    expect(getVerificationKey(legacy(base58btc.encode(new Uint8Array(33).fill(7))))).toBeUndefined()
    // unknown type, wrong controller, first #atproto entry wins even if unusable
    const mk = k.did().slice(8)
    expect(getVerificationKey({ id: DID, verificationMethod: [{ id: '#atproto', type: 'JsonWebKey2020', publicKeyMultibase: mk }] })).toBeUndefined()
    expect(getVerificationKey({ id: DID, verificationMethod: [{ id: '#atproto', type: 'Multikey', controller: 'did:plc:someoneelse', publicKeyMultibase: mk }] })).toBeUndefined()
    expect(getVerificationKey({ id: DID, verificationMethod: [{ id: 'did:plc:other#atproto', type: 'Multikey', publicKeyMultibase: mk }] })).toBeUndefined()
    expect(
      getVerificationKey({
        id: DID,
        verificationMethod: [
          { id: '#atproto', type: 'Multikey', publicKeyMultibase: 'zbad' },
          { id: '#atproto', type: 'Multikey', publicKeyMultibase: mk },
        ],
      }),
    ).toBeUndefined()
  })

  it('picks the first valid at:// handle, lowercased', () => {
    const doc = (aka: unknown[]): DidDocument => ({ id: DID, alsoKnownAs: aka as string[] })
    expect(getHandle(doc(['https://x.example', 'at://Alice.Example.com', 'at://bob.example.com']))).toBe('alice.example.com')
    expect(getHandle(doc(['at://not a handle', 'at://bob.example.com']))).toBe('bob.example.com')
    expect(getHandle(doc(['at://bob.example.com/app.bsky.feed.post/1']))).toBeUndefined()
    expect(getHandle(doc([42, 'at://']))).toBeUndefined()
  })

  it('finds service endpoints by id and type', async () => {
    const docs = await sampleDocs()
    expect(getServiceEndpoint(docs[1]!, '#bsky_appview')).toBe('https://api.example.com')
    expect(getServiceEndpoint(docs[1]!, '#bsky_appview', 'BskyAppView')).toBe('https://api.example.com')
    expect(getServiceEndpoint(docs[1]!, '#bsky_appview', 'AtprotoPersonalDataServer')).toBeUndefined()
    expect(getServiceEndpoint(docs[1]!, '#atproto_pds')).toBe('https://pds2.example.com:8443')
    expect(getServiceEndpoint(docs[1]!, '#atproto_labeler')).toBeUndefined()
    const bad = (endpoint: unknown): DidDocument => ({
      id: DID,
      service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: endpoint as string }],
    })
    expect(parseDidDocument(bad('ftp://pds.example.com')).pdsEndpoint).toBeUndefined()
    expect(parseDidDocument(bad('https://user:pw@pds.example.com')).pdsEndpoint).toBeUndefined()
    expect(parseDidDocument(bad('not a url')).pdsEndpoint).toBeUndefined()
    expect(parseDidDocument(bad({ uri: 'https://pds.example.com' })).pdsEndpoint).toBeUndefined()
    expect(parseDidDocument(bad('http://127.0.0.1:2583')).pdsEndpoint).toBe('http://127.0.0.1:2583')
  })
})
