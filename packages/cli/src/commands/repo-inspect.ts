/**
 * `stratos repo inspect file.car`: the commit, records per collection, and whether the signature and the
 * MST check out.
 */
import { readFile } from 'node:fs/promises'
import { cborDecode, lexToJson } from '@stratos/core/data'
import { parseDidKey } from '@stratos/core/crypto'
import {
  CommitDecodeError,
  MstWalkError,
  RepoVerifyError,
  decodeCommit,
  readCarSync,
  verifyRepoCar,
  walkMst,
  type SignedCommit,
} from '@stratos/core/repo'
import { isValidDid } from '@stratos/core/syntax'
import { CliError, EXIT_FAILURE, EXIT_OK, UsageError, command } from '../util/command.js'
import { identityOptions, resolverFromFlags } from '../util/identity.js'
import { formatBytes, println, table, write } from '../util/io.js'

export interface InspectResult {
  file: string
  bytes: number
  blocks: number
  commit: { cid: string; did: string; rev: string; data: string; version: number; prev: string | null }
  records: number
  collections: Record<string, number>
  verification: {
    status: 'verified' | 'failed' | 'unverified'
    /** did:key used */
    key?: string
    keySource?: 'flag' | 'did-document'
    reason?: string
    message?: string
  }
}

export const repoInspectCommand = command({
  name: 'repo inspect',
  summary: 'Read a repo CAR: commit, records per collection, signature and MST verification',
  usage: 'repo inspect <file.car> [--did DID] [--key did:key:…] [options]',
  description: `
Reads a repo export (a CAR whose root is a signed v3 commit), walks its MST and counts the records of
each collection. The commit signature is checked with --key, or else with the #atproto key of the DID's
document (the commit's own DID, or --did), and the tree is checked to be complete and well-formed.

Exit status: 0 when verified, or when the key could not be looked up and neither --did nor --key asked
for it (status "unverified"); 1 when the CAR is malformed or verification fails.`,
  options: {
    did: { type: 'string', valueName: 'DID', description: 'the account the repo must belong to (default: the commit\'s DID)' },
    key: { type: 'string', valueName: 'DIDKEY', description: 'verify with this did:key instead of resolving the DID' },
    offline: { type: 'boolean', description: 'do not resolve the DID (verify only with --key)' },
    json: { type: 'boolean', description: 'print one JSON object' },
    records: { type: 'boolean', description: 'also print every record as a JSON line {uri, cid, value}' },
    ...identityOptions,
  },
  positionals: { min: 1, max: 1 },
  examples: ['stratos repo inspect alice.car', 'stratos repo inspect alice.car --key did:key:zQ3sh…'],
  async run({ values, positionals, io }) {
    const file = positionals[0]!
    if (values.did !== undefined && !isValidDid(values.did)) throw new UsageError(`--did is not a DID: '${values.did}'`)
    if (values.key !== undefined) {
      try {
        parseDidKey(values.key)
      } catch (err) {
        throw new UsageError(`--key is not a did:key: ${(err as Error).message}`)
      }
    }
    let bytes: Uint8Array
    try {
      bytes = await readFile(file)
    } catch (err) {
      throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }

    // structure: CAR, commit
    let car
    try {
      car = readCarSync(bytes)
    } catch (err) {
      throw new CliError(`${file}: ${(err as Error).message}`)
    }
    const root = car.roots[0]
    if (!root) throw new CliError(`${file}: the CAR has no root`)
    const commitBytes = car.blocks.get(root)
    if (!commitBytes) throw new CliError(`${file}: the root block ${root} is not in the CAR`)
    let commit: SignedCommit
    try {
      commit = decodeCommit(commitBytes).commit
    } catch (err) {
      if (err instanceof CommitDecodeError) throw new CliError(`${file}: the root is not a repo commit: ${err.message}`)
      throw err
    }
    const did = values.did ?? commit.did

    // the key
    const verification: InspectResult['verification'] = { status: 'unverified' }
    let keyWanted = values.key !== undefined || values.did !== undefined
    let key = values.key
    if (key) {
      verification.keySource = 'flag'
    } else if (!values.offline) {
      try {
        key = await resolverFromFlags(values).getSigningKey(did)
        verification.keySource = 'did-document'
      } catch (err) {
        verification.reason = 'identity-unresolved'
        verification.message = `cannot get the signing key of ${did}: ${(err as Error).message}`
      }
    } else {
      verification.reason = 'offline'
      verification.message = 'no --key given and --offline set'
      keyWanted = false
    }

    // verification (signature + complete MST), or at least the walk
    let leaves: { collection: string; rkey: string; cid: string; value?: unknown }[] = []
    let walkError: string | undefined
    if (key) {
      verification.key = key
      try {
        const verified = await verifyRepoCar(bytes, did, key)
        verification.status = 'verified'
        leaves = verified.records.map((r) => ({ collection: r.collection, rkey: r.rkey, cid: r.cid.toString(), value: r.value }))
      } catch (err) {
        if (!(err instanceof RepoVerifyError)) throw err
        verification.status = 'failed'
        verification.reason = err.reason
        verification.message = err.message
      }
    }
    if (verification.status !== 'verified') {
      try {
        for (const item of walkMst((cid) => car.blocks.get(cid), commit.data)) {
          if (item.type !== 'leaf') continue
          const slash = item.key.indexOf('/')
          const rec = car.blocks.get(item.cid)
          let value: unknown
          if (rec && values.records) {
            try {
              value = cborDecode(rec)
            } catch {
              value = undefined
            }
          }
          leaves.push({ collection: item.key.slice(0, slash), rkey: item.key.slice(slash + 1), cid: item.cid.toString(), value })
        }
      } catch (err) {
        walkError = err instanceof MstWalkError ? err.message : String(err)
        if (verification.status === 'unverified') {
          verification.status = 'failed'
          verification.reason = err instanceof MstWalkError ? err.reason : 'malformed'
          verification.message = walkError
        }
      }
    }

    const collections: Record<string, number> = {}
    for (const l of leaves) collections[l.collection] = (collections[l.collection] ?? 0) + 1
    const result: InspectResult = {
      file,
      bytes: bytes.byteLength,
      blocks: car.blocks.size,
      commit: {
        cid: root.toString(),
        did: commit.did,
        rev: commit.rev,
        data: commit.data.toString(),
        version: commit.version,
        prev: commit.prev ? commit.prev.toString() : null,
      },
      records: leaves.length,
      collections,
      verification,
    }

    if (values.json) {
      await println(io.stdout, JSON.stringify(result))
    } else {
      const v = verification
      const status =
        v.status === 'verified'
          ? `verified: signature by ${v.key}${v.keySource === 'did-document' ? ` (from the DID document of ${did})` : ''}, MST complete`
          : v.status === 'failed'
            ? `FAILED (${v.reason}): ${v.message}`
            : `not verified: ${v.message}`
      const lines = [
        `file        ${file} (${formatBytes(bytes.byteLength)}, ${car.blocks.size} blocks)`,
        `commit      ${root}`,
        `  did       ${commit.did}`,
        `  rev       ${commit.rev}`,
        `  data      ${commit.data}`,
        `  version   ${commit.version}`,
        `signature   ${status}`,
        `records     ${leaves.length}${walkError && v.status !== 'failed' ? ` (walk stopped: ${walkError})` : ''}`,
      ]
      const rows = Object.entries(collections)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([c, n]) => [`  ${c}`, String(n)])
      await println(io.stdout, lines.join('\n'))
      if (rows.length > 0) await println(io.stdout, table(rows))
    }
    if (values.records) {
      for (const l of leaves) {
        let value: unknown = null
        try {
          value = l.value === undefined ? null : lexToJson(l.value)
        } catch {
          value = null
        }
        await write(io.stdout, `${JSON.stringify({ uri: `at://${commit.did}/${l.collection}/${l.rkey}`, cid: l.cid, value })}\n`)
      }
    }

    if (verification.status === 'failed') {
      io.stderr.write(`stratos repo inspect: verification failed (${verification.reason}): ${verification.message}\n`)
      return EXIT_FAILURE
    }
    if (verification.status === 'unverified' && keyWanted) {
      io.stderr.write(`stratos repo inspect: ${verification.message}\n`)
      return EXIT_FAILURE
    }
    if (verification.status === 'unverified') io.stderr.write(`stratos repo inspect: warning: ${verification.message}\n`)
    return EXIT_OK
  },
})
