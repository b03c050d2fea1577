/**
 * Jetstream events from the relay's outbound (already verified) events: a #commit becomes one `commit`
 * event per op (record as data-model JSON), #identity an `identity` event, #account an `account` event,
 * #sync a `sync` event (served on the v2 endpoint only, as Jetstream does).
 *
 * Each event is decoded once; its kind-specific part is JSON-encoded once and spliced into the two wire
 * shapes, each built on first use and then shared by every subscriber of that shape:
 * - v1 (`GET /subscribe`): `{"did","time_us","cursor","kind","commit"|"identity"|"account"}`, the shape the
 *   2026 Jetstream still serves there (v1 plus the `cursor` number);
 * - v2 (`/xrpc/network.bsky.jetstream.subscribeEvents`): an xrpc.v1.json message frame,
 *   `{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#<kind>","seq","did","time",…}}`.
 *
 * Sequence numbers: Jetstream numbers every event it serves. Here an outbound event of relay seq s becomes
 * Jetstream events s×1024, s×1024+1, … (one per op; a verified commit has at most 200 ops), so the cursor
 * is derived from the relay's own log and survives restarts without another table. Values stay far below
 * 10^15, the boundary above which a cursor is a unix-µs time.
 */
import { CID, cborDecode, lexToJson } from '@stratos/core/data'
import { readCarSync } from '@stratos/core/repo'
import type { PublishedEvent } from '../outbox/outbox.js'
import { findBlocks } from './car-scan.js'

export type JetstreamKind = 'commit' | 'identity' | 'account' | 'sync'

/** Jetstream seqs per relay seq (ops of one commit share a relay seq) */
export const SEQ_STRIDE = 1024
export const V2_NSID = 'network.bsky.jetstream.subscribeEvents'

export interface JetstreamItem {
  kind: JetstreamKind
  did: string
  /** commit events only */
  collection?: string
  timeUs: number
  /** the Jetstream seq (relay seq × SEQ_STRIDE + op index): the cursor */
  seq: number
  /** the kind-specific JSON (commit: the fields without braces; others: the wrapped upstream event) */
  inner: string
  /** built on first use */
  v1?: Buffer | null
  v2?: Buffer
  zstdV1?: Buffer
  zstdV2?: Buffer
}

/** The record blocks of a commit's creates and updates, by CID string: scanned, or read and verified by core. */
function recordBlocks(car: unknown, ops: Record<string, unknown>[]): Map<string, Uint8Array> {
  if (!(car instanceof Uint8Array)) return new Map()
  const wanted: CID[] = []
  for (const op of ops) {
    const cid = CID.asCID(op.cid)
    if (cid && (op.action === 'create' || op.action === 'update')) wanted.push(cid)
  }
  if (wanted.length === 0) return new Map()
  const found = findBlocks(car, wanted)
  if (found && wanted.every((c) => found.has(c.toString()))) return found
  const all = new Map<string, Uint8Array>()
  readCarSync(car).blocks.forEach((bytes, cid) => all.set(cid.toString(), bytes))
  return all
}

/** The relay seq a Jetstream seq belongs to. */
export const relaySeqOf = (jsSeq: number): number => Math.floor(jsSeq / SEQ_STRIDE)

/** RFC 3339, UTC, exactly six fractional digits (the v2 `time` field). */
export function wireTime(timeUs: number): string {
  const ms = Math.floor(timeUs / 1000)
  const iso = new Date(ms).toISOString() // …T…:ss.mmmZ
  const micros = String(timeUs - ms * 1000).padStart(3, '0')
  return `${iso.slice(0, -1)}${micros}Z`
}

/** The Jetstream events of one outbound event, in order, with time_us = evt.timeUs + index. */
export function toJetstreamItems(evt: PublishedEvent): JetstreamItem[] {
  const { body, did, seq, timeUs } = evt
  const base = seq * SEQ_STRIDE
  switch (evt.type) {
    case '#commit': {
      const ops = Array.isArray(body.ops) ? (body.ops as Record<string, unknown>[]) : []
      const blockOf = recordBlocks(body.blocks, ops)
      const rev = String(body.rev)
      const out: JetstreamItem[] = []
      const n = Math.min(ops.length, SEQ_STRIDE)
      for (let i = 0; i < n; i++) {
        const op = ops[i]!
        const path = String(op.path)
        const slash = path.indexOf('/')
        const collection = path.slice(0, slash)
        const rkey = path.slice(slash + 1)
        const action = String(op.action)
        const commit: Record<string, unknown> = { rev, operation: action, collection, rkey }
        if (action === 'create' || action === 'update') {
          const cid = CID.asCID(op.cid)
          const bytes = cid ? blockOf.get(cid.toString()) : undefined
          if (!cid || !bytes) continue // the relay only forwards verified commits, whose blocks hold every record
          commit.record = lexToJson(cborDecode(bytes))
          commit.cid = cid.toString()
        }
        const inner = JSON.stringify(commit).slice(1, -1)
        out.push({ kind: 'commit', did, collection, timeUs: timeUs + i, seq: base + i, inner })
      }
      return out
    }
    case '#identity':
    case '#account':
    case '#sync': {
      // the relay's subscribeRepos event (its seq is the relay seq, assigned when it was logged)
      const kind = evt.type.slice(1) as JetstreamKind
      const upstream = lexToJson({ ...body, seq })
      return [{ kind, did, timeUs, seq: base, inner: JSON.stringify(upstream) }]
    }
    default:
      return []
  }
}

/** The v1 (`/subscribe`) bytes of an item; null for kinds v1 never sends (sync). */
export function v1Bytes(item: JetstreamItem): Buffer | null {
  if (item.v1 !== undefined) return item.v1
  const head = `{"did":${JSON.stringify(item.did)},"time_us":${item.timeUs},"cursor":${item.seq},"kind":"${item.kind}"`
  switch (item.kind) {
    case 'commit':
      item.v1 = Buffer.from(`${head},"commit":{${item.inner}}}`)
      break
    case 'identity':
    case 'account':
      item.v1 = Buffer.from(`${head},"${item.kind}":${item.inner}}`)
      break
    default:
      item.v1 = null
  }
  return item.v1
}

/** The v2 (xrpc.v1.json message frame) bytes of an item. */
export function v2Bytes(item: JetstreamItem): Buffer {
  if (item.v2) return item.v2
  const head =
    `{"$type":"message","payload":{"$type":"${V2_NSID}#${item.kind}","seq":${item.seq},` +
    `"did":${JSON.stringify(item.did)},"time":"${wireTime(item.timeUs)}"`
  item.v2 = Buffer.from(item.kind === 'commit' ? `${head},${item.inner}}}` : `${head},"${item.kind}":${item.inner}}}`)
  return item.v2
}

/** A v2 #info advisory frame (no seq; does not move the cursor). */
export function v2Info(name: string, message: string): Buffer {
  return Buffer.from(JSON.stringify({ $type: 'message', payload: { $type: `${V2_NSID}#info`, name, message } }))
}

/** A v2 error frame (terminal: the connection is closed right after). */
export function v2Error(error: string, message: string): Buffer {
  return Buffer.from(JSON.stringify({ $type: 'error', error, message }))
}
