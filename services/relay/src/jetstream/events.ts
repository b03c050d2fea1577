/**
 * Jetstream events from the relay's outbound (already verified) events: a #commit becomes one `commit`
 * event per op (record as data-model JSON), #identity an `identity` event, #account an `account` event.
 * #sync has no Jetstream form and yields nothing. Each event is JSON-encoded here, once, for every
 * subscriber; the fields a subscriber filters on (kind, did, collection) travel next to the bytes.
 */
import { CID, cborDecode, lexToJson } from '@stratos/core/data'
import { readCarSync } from '@stratos/core/repo'
import type { PublishedEvent } from '../outbox/outbox.js'

export type JetstreamKind = 'commit' | 'identity' | 'account'

export interface JetstreamItem {
  kind: JetstreamKind
  did: string
  /** commit events only */
  collection?: string
  timeUs: number
  /** the relay seq of the outbound event it comes from (the v2 cursor) */
  seq: number
  /** the event as v1 JSON (UTF-8) */
  json: Buffer
  /** the event as v2 JSON (v1 plus `seq`), built on first use */
  jsonV2?: Buffer
  /** zstd of `json` / `jsonV2`, built on first use */
  zstd?: Buffer
  zstdV2?: Buffer
}

function cidString(v: unknown): string | undefined {
  if (v === null || v === undefined) return undefined
  const cid = CID.asCID(v)
  return cid ? cid.toString() : typeof v === 'string' ? v : undefined
}

/** The Jetstream events of one outbound event, in order, with time_us = evt.timeUs + index. */
export function toJetstreamItems(evt: PublishedEvent): JetstreamItem[] {
  const { body, did, seq, timeUs } = evt
  const item = (kind: JetstreamKind, value: Record<string, unknown>, collection?: string, offset = 0): JetstreamItem => {
    const t = timeUs + offset
    const obj: Record<string, unknown> = { did, time_us: t, kind, [kind]: value }
    return { kind, did, collection, timeUs: t, seq, json: Buffer.from(JSON.stringify(obj)) }
  }
  switch (evt.type) {
    case '#commit': {
      const ops = Array.isArray(body.ops) ? (body.ops as Record<string, unknown>[]) : []
      if (ops.length === 0) return []
      let blocks: ReturnType<typeof readCarSync>['blocks'] | null = null
      const blockOf = (cid: CID): Uint8Array | undefined => {
        if (!blocks) blocks = body.blocks instanceof Uint8Array ? readCarSync(body.blocks).blocks : null
        return blocks?.get(cid)
      }
      const rev = String(body.rev)
      const out: JetstreamItem[] = []
      ops.forEach((op, i) => {
        const path = String(op.path)
        const slash = path.indexOf('/')
        const collection = path.slice(0, slash)
        const rkey = path.slice(slash + 1)
        const action = String(op.action)
        const commit: Record<string, unknown> = { rev, operation: action, collection, rkey }
        if (action === 'create' || action === 'update') {
          const cid = CID.asCID(op.cid)
          const bytes = cid ? blockOf(cid) : undefined
          if (!cid || !bytes) return // the relay only forwards verified commits, whose blocks hold every record
          commit.record = lexToJson(cborDecode(bytes))
          commit.cid = cid.toString()
        }
        out.push(item('commit', commit, collection, i))
      })
      return out
    }
    case '#identity': {
      const value: Record<string, unknown> = { did, seq }
      if (typeof body.handle === 'string') value.handle = body.handle
      value.time = body.time
      return [item('identity', value)]
    }
    case '#account': {
      const value: Record<string, unknown> = { active: body.active === true, did, seq, time: body.time }
      if (typeof body.status === 'string') value.status = body.status
      return [item('account', value)]
    }
    default:
      return []
  }
}

/** The v2 form of an item: the v1 object with the relay `seq` (the v2 cursor) added. */
export function jsonV2(item: JetstreamItem): Buffer {
  if (!item.jsonV2) {
    const s = item.json.toString('utf8')
    item.jsonV2 = Buffer.from(`{"seq":${item.seq},${s.slice(1)}`)
  }
  return item.jsonV2
}

export { cidString }
