/**
 * `stratos resolve <handle|did|at-uri>`: handle → DID → DID document → PDS → record, each step shown.
 */
import { parseAtUri } from '@stratos/core/syntax'
import type { DidDocument } from '@stratos/core/identity'
import { CliError, EXIT_FAILURE, EXIT_OK, UsageError, command } from '../util/command.js'
import {
  classifyActor,
  didDocumentUrl,
  fetchDidDocument,
  identityOptions,
  resolveHandleSteps,
  resolverFromFlags,
  type HandleResolution,
} from '../util/identity.js'
import { println } from '../util/io.js'
import { xrpcJson } from '../util/xrpc.js'

export interface ResolveResult {
  input: string
  handle?: string
  handleResolution?: HandleResolution
  did?: string
  didDocumentUrl?: string
  didDocument?: DidDocument
  /** the handle the DID document claims */
  claimedHandle?: string
  /** the claimed handle resolves back to the DID */
  handleVerified?: boolean
  signingKey?: string
  pds?: string
  repo?: { handle?: string; handleIsCorrect?: boolean; collections: string[] }
  record?: { uri: string; cid?: string; value: unknown }
  records?: { uri: string; cid?: string; value: unknown }[]
  cursor?: string
  error?: string
}

function kv(label: string, value: string, indent = 0): string {
  // at least one space between a label and its value, even for labels as wide as the column
  return `${' '.repeat(indent)}${label.padEnd(Math.max(10 - indent, label.length + 1))}${value}`
}

export const resolveCommand = command({
  name: 'resolve',
  summary: 'Resolve a handle, DID or at:// URI step by step: handle → DID → DID document → PDS → record',
  usage: 'resolve <handle|did|at-uri> [options]',
  description: `
Walks the identity chain the way a client does, and prints every step: the handle's DNS TXT record
(_atproto.<handle>) and HTTPS well-known (/.well-known/atproto-did), the DID document (from the PLC
directory for did:plc, from the host for did:web), the claimed handle and whether it resolves back, the
signing key, the PDS and the repo there. For an at:// URI it then fetches the record
(com.atproto.repo.getRecord), or lists the collection (com.atproto.repo.listRecords).
Exits 1 when a step fails; with --json the object printed then has an "error" field.`,
  options: {
    ...identityOptions,
    json: { type: 'boolean', description: 'print one JSON object instead of the human form' },
    limit: { type: 'string', valueName: 'N', description: 'records to list for a collection URI', default: '50' },
  },
  positionals: { min: 1, max: 1 },
  examples: [
    'stratos resolve alice.bsky.social',
    'stratos resolve did:plc:ewvi7nxzyoun6zhxrhs64oiz',
    'stratos resolve at://alice.test/app.bsky.feed.post/3kabc --dev --plc http://127.0.0.1:2582 --handle-resolver http://127.0.0.1:2583',
  ],
  async run({ values, positionals, io }) {
    const input = positionals[0]!
    const resolver = resolverFromFlags(values)
    const limit = Number(values.limit)
    if (!/^\d+$/.test(values.limit) || limit < 1 || limit > 100) throw new UsageError('--limit must be between 1 and 100')

    let authority = input
    let collection: string | undefined
    let rkey: string | undefined
    if (input.startsWith('at://')) {
      try {
        const parts = parseAtUri(input)
        authority = parts.authority
        collection = parts.collection
        rkey = parts.rkey
      } catch (err) {
        throw new UsageError(`not a valid at:// URI: ${(err as Error).message}`)
      }
    }
    const actor = classifyActor(authority)
    const result: ResolveResult = { input }
    const human = !values.json
    const show = (line: string) => (human ? println(io.stdout, line) : undefined)

    try {
      // 1. handle → DID
      if (actor.kind === 'handle') {
        result.handle = actor.value
        const res = await resolveHandleSteps(resolver, actor.value)
        result.handleResolution = res
        await show(kv('handle', actor.value))
        await show(kv('dns', res.dns === 'skipped' ? '(skipped: special-use TLD)' : (res.dns ?? '(no _atproto TXT record)'), 2))
        await show(kv('https', res.http ?? '(no /.well-known/atproto-did)', 2))
        if (res.conflict) await show(kv('warning', `DNS and HTTPS disagree; DNS wins (${res.dns})`, 2))
        if (!res.did) throw new CliError(`handle ${actor.value} does not resolve to a DID`)
        result.did = res.did
      } else {
        result.did = actor.value
      }
      const did = result.did

      // 2. DID → DID document
      result.didDocumentUrl = didDocumentUrl(did, values.plc, values.dev)
      await show(kv('did', did))
      if (result.didDocumentUrl) await show(kv('document', result.didDocumentUrl, 2))
      const { doc, identity } = await fetchDidDocument(resolver, did)
      result.didDocument = doc
      result.claimedHandle = identity.handle
      result.signingKey = identity.signingKey
      result.pds = identity.pdsEndpoint

      // 3. the handle it claims, checked both ways
      if (identity.handle) {
        if (actor.kind === 'handle') {
          result.handleVerified = identity.handle === actor.value
        } else {
          const back = await resolver.resolveHandle(identity.handle)
          result.handleVerified = back === did
        }
        const status = result.handleVerified
          ? 'verified'
          : actor.kind === 'handle'
            ? `NOT verified: the document claims ${identity.handle}, not ${actor.value}`
            : `NOT verified: ${identity.handle} does not resolve back to ${did}`
        await show(kv('handle', `${identity.handle} (${status})`, 2))
      } else {
        result.handleVerified = false
        await show(kv('handle', '(none claimed)', 2))
      }
      await show(kv('key', identity.signingKey ?? '(no #atproto signing key)', 2))
      await show(kv('pds', identity.pdsEndpoint ?? '(no #atproto_pds service)', 2))
      if (!identity.pdsEndpoint) throw new CliError(`the DID document of ${did} names no PDS`)
      const pds = identity.pdsEndpoint

      // 4. the repo on the PDS
      const desc = await xrpcJson<{ handle?: string; handleIsCorrect?: boolean; collections?: string[] }>(
        pds,
        'com.atproto.repo.describeRepo',
        { params: { repo: did } },
      )
      result.repo = {
        handle: desc.handle,
        handleIsCorrect: desc.handleIsCorrect,
        collections: Array.isArray(desc.collections) ? desc.collections : [],
      }
      const cols = result.repo.collections
      await show(kv('repo', `on ${pds}, ${cols.length} collection${cols.length === 1 ? '' : 's'}${cols.length ? `: ${cols.join(', ')}` : ''}`))

      // 5. the record (or the collection)
      if (collection && rkey) {
        const rec = await xrpcJson<{ uri: string; cid?: string; value: unknown }>(pds, 'com.atproto.repo.getRecord', {
          params: { repo: did, collection, rkey },
        })
        result.record = { uri: rec.uri, cid: rec.cid, value: rec.value }
        await show(kv('record', rec.uri))
        if (rec.cid) await show(kv('cid', rec.cid, 2))
        await show(JSON.stringify(rec.value, null, 2))
      } else if (collection) {
        const list = await xrpcJson<{ records?: { uri: string; cid?: string; value: unknown }[]; cursor?: string }>(
          pds,
          'com.atproto.repo.listRecords',
          { params: { repo: did, collection, limit } },
        )
        result.records = list.records ?? []
        if (list.cursor) result.cursor = list.cursor
        await show(kv('records', `${result.records.length} in ${collection}${list.cursor ? ' (more: raise --limit or page with listRecords)' : ''}`))
        for (const r of result.records) await show(kv('', `${r.uri}  ${r.cid ?? ''}`.trimEnd(), 2))
      }
    } catch (err) {
      if (values.json) {
        result.error = err instanceof Error ? err.message : String(err)
        await println(io.stdout, JSON.stringify(result))
        io.stderr.write(`stratos resolve: ${result.error}\n`)
        return EXIT_FAILURE
      }
      throw err
    }
    if (values.json) await println(io.stdout, JSON.stringify(result))
    return EXIT_OK
  },
})

