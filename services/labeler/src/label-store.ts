/**
 * The labels this labeler has issued: creating, negating and reading them, and the subscribeLabels event
 * log. One row per (uri, val) holds the current label; a new label or a negation for the same pair
 * replaces the row under a new seq, so a replay from 0 yields the current state and a consumer that
 * follows live sees every change.
 */
import type { SigningKeypair } from '@stratos/core/crypto'
import type { EventLog, LoggedEvent } from '@stratos/core/stream'
import { encodeMessageFrame } from '@stratos/core/stream'
import { headSeq, type Db } from './db.js'
import { labelFromRow, signLabel, type Label, type UnsignedLabel } from './labels.js'

export interface NewLabel {
  uri: string
  cid?: string
  val: string
  neg?: boolean
  exp?: string
}

export interface StoredLabel {
  seq: number
  label: Label
}

export interface QueryOptions {
  /** exact URIs or prefixes ending in `*` */
  uriPatterns?: string[]
  vals?: string[]
  /** include negation labels and expired labels (admin listing) */
  includeInactive?: boolean
  /** seq to continue after */
  after?: number
  limit: number
  now?: Date
}

/** `#labels` frame of the subscribeLabels stream: one label per event. */
export function labelsFrame(seq: number, labels: Label[]): Uint8Array {
  return encodeMessageFrame('#labels', { seq, labels })
}

function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`)
}

export class LabelStore {
  private writes: Promise<unknown> = Promise.resolve()
  private readonly listeners = new Set<(evt: LoggedEvent) => void>()

  constructor(
    private readonly db: Db,
    readonly did: string,
    private readonly key: SigningKeypair,
  ) {}

  /** called with every new event (in seq order) after it is stored */
  onEvent(fn: (evt: LoggedEvent) => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  /**
   * Signs and stores labels (writes are serialized so events are published in seq order). A label for a
   * (uri, val) pair replaces the previous one; its `cts` is kept after the previous label's.
   */
  apply(items: NewLabel[]): Promise<StoredLabel[]> {
    const run = this.writes.then(() => this.applyNow(items))
    this.writes = run.catch(() => undefined)
    return run
  }

  private async applyNow(items: NewLabel[]): Promise<StoredLabel[]> {
    const out: StoredLabel[] = []
    await this.db.transaction().execute(async (tx) => {
      for (const item of items) {
        const prev = await tx
          .selectFrom('label')
          .select(['seq', 'cts'])
          .where('uri', '=', item.uri)
          .where('val', '=', item.val)
          .executeTakeFirst()
        let cts = new Date()
        if (prev && Date.parse(prev.cts) >= cts.getTime()) cts = new Date(Date.parse(prev.cts) + 1)
        const unsigned: UnsignedLabel = { ver: 1, src: this.did, uri: item.uri, val: item.val, cts: cts.toISOString() }
        if (item.cid) unsigned.cid = item.cid
        if (item.neg) unsigned.neg = true
        if (item.exp) unsigned.exp = item.exp
        const label = await signLabel(unsigned, this.key)
        if (prev) await tx.deleteFrom('label').where('seq', '=', prev.seq).execute()
        const row = await tx
          .insertInto('label')
          .values({
            src: label.src,
            uri: label.uri,
            cid: label.cid ?? null,
            val: label.val,
            neg: label.neg ? 1 : 0,
            cts: label.cts,
            exp: label.exp ?? null,
            sig: label.sig,
          })
          .returning('seq')
          .executeTakeFirstOrThrow()
        out.push({ seq: row.seq, label })
      }
    })
    for (const s of out) {
      const evt = { seq: s.seq, frame: labelsFrame(s.seq, [s.label]) }
      for (const fn of this.listeners) fn(evt)
    }
    return out
  }

  /** Current labels, ascending seq. */
  async query(opts: QueryOptions): Promise<StoredLabel[]> {
    let q = this.db.selectFrom('label').selectAll().orderBy('seq', 'asc').limit(opts.limit)
    if (opts.after !== undefined) q = q.where('seq', '>', opts.after)
    if (opts.uriPatterns && opts.uriPatterns.length > 0) {
      const patterns = opts.uriPatterns
      q = q.where((eb) =>
        eb.or(
          patterns.map((p) =>
            p.endsWith('*') ? eb('uri', 'like', `${escapeLike(p.slice(0, -1))}%`) : eb('uri', '=', p),
          ),
        ),
      )
    }
    if (opts.vals && opts.vals.length > 0) q = q.where('val', 'in', opts.vals)
    if (!opts.includeInactive) {
      const now = (opts.now ?? new Date()).toISOString()
      q = q.where('neg', '=', 0).where((eb) => eb.or([eb('exp', 'is', null), eb('exp', '>', now)]))
    }
    const rows = await q.execute()
    return rows.map((r) => ({ seq: r.seq, label: labelFromRow(r) }))
  }

  /** The subscribeLabels replay source. */
  eventLog(): EventLog {
    const db = this.db
    return {
      latestSeq: async () => {
        const r = await db.selectFrom('label').select((eb) => eb.fn.max('seq').as('seq')).executeTakeFirst()
        return r?.seq == null ? null : Number(r.seq)
      },
      // the table holds the whole current state: every cursor can be served (no OutdatedCursor)
      earliestSeq: async () => ((await headSeq(db)) > 0 ? 1 : null),
      headSeq: async () => (await headSeq(db)) || null,
      readAfter: async (seq, limit) => {
        const rows = await db.selectFrom('label').selectAll().where('seq', '>', seq).orderBy('seq', 'asc').limit(limit).execute()
        return rows.map((r) => ({ seq: r.seq, frame: labelsFrame(r.seq, [labelFromRow(r)]) }))
      },
    }
  }
}
