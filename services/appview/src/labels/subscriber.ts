/**
 * Follows labelers: every labeler the AppView knows (APPVIEW_LABELERS, APPVIEW_MOD_SERVICE_DID, and the
 * accounts that published an app.bsky.labeler.service record) gets a subscription to its
 * com.atproto.label.subscribeLabels, found through its DID document (#atproto_labeler service). Each
 * label must come from that labeler (`src`) and carry a valid signature by its #atproto_label key (the DID
 * document is fetched again once when a signature fails, for key rotations); others are dropped and
 * counted. Cursors are kept in labeler_cursor.
 */
import type { Kysely } from 'kysely'
import type { Logger } from 'pino'
import { Counter, type Registry } from 'prom-client'
import { verifyLabel } from '@stratos/core/label'
import { getServiceEndpoint, getVerificationKey, type IdentityResolver } from '@stratos/core/identity'
import { SubscriptionClient, type StreamEvent } from '@stratos/core/stream'
import type { DatabaseSchema } from '../indexer/schema.js'
import { LABELER_COLLECTION, storeLabel, type IncomingLabel } from './labels.js'

type Db = Kysely<DatabaseSchema>

export { LABELER_COLLECTION }

/**
 * The accounts with a labeler service record, read from record_labeler_idx (migration 012: a partial index
 * of the labeler records alone). Before it, no index led with the collection and each refresh scanned the
 * whole record table on the ingesting thread (2.4 s at the 1M-record bench size).
 */
export function labelerDidsQuery(db: Db) {
  return db.selectFrom('record').select('did').where('collection', '=', LABELER_COLLECTION).where('rkey', '=', 'self')
}

export interface LabelSubscriptionsOptions {
  db: Db
  idResolver: IdentityResolver
  log: Logger
  /** always followed */
  configured: string[]
  /** how often indexed labeler records are looked up (ms) */
  refreshMs: number
  registry?: Registry
  minBackoffMs?: number
  maxBackoffMs?: number
}

interface Follow {
  did: string
  client: SubscriptionClient | null
  endpoint: string | null
  key: string | null
  /** last time the DID document was fetched again because of a bad signature */
  refreshedAt: number
}

export class LabelSubscriptions {
  private readonly follows = new Map<string, Follow>()
  private timer: NodeJS.Timeout | null = null
  private running = false
  private refreshing: Promise<void> | null = null
  readonly accepted: Counter<'labeler'>
  readonly rejected: Counter<'reason'>

  constructor(private readonly opts: LabelSubscriptionsOptions) {
    const registers = opts.registry ? [opts.registry] : []
    this.accepted = new Counter({
      name: 'appview_labels_accepted_total',
      help: 'labels received from labelers, verified and stored',
      labelNames: ['labeler'],
      registers,
    })
    this.rejected = new Counter({
      name: 'appview_labels_rejected_total',
      help: 'labels received from labelers and dropped, by reason (bad-signature, wrong-source, invalid)',
      labelNames: ['reason'],
      registers,
    })
  }

  /** DIDs currently followed */
  get labelers(): string[] {
    return [...this.follows.keys()]
  }

  /** whether the subscription to `did` is open */
  connected(did: string): boolean {
    return this.follows.get(did)?.client?.connected ?? false
  }

  start(): void {
    if (this.running) return
    this.running = true
    void this.refresh()
    this.timer = setInterval(() => void this.refresh(), this.opts.refreshMs)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    this.running = false
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    await this.refreshing
    await Promise.all([...this.follows.values()].map((f) => f.client?.stop()))
    this.follows.clear()
  }

  /** Looks up the labelers to follow now (configured + indexed records) and subscribes to new ones. */
  refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const rows = await labelerDidsQuery(this.opts.db).execute()
        const dids = new Set([...this.opts.configured, ...rows.map((r) => r.did)])
        for (const did of dids) {
          if (!this.running) break
          const f = this.follows.get(did) ?? { did, client: null, endpoint: null, key: null, refreshedAt: 0 }
          this.follows.set(did, f)
          if (!f.client) await this.connect(f)
        }
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message }, 'labeler refresh failed')
      } finally {
        this.refreshing = null
      }
    })()
    return this.refreshing
  }

  private async resolve(f: Follow, forceRefresh: boolean): Promise<void> {
    const doc = await this.opts.idResolver.resolveDid(f.did, { forceRefresh })
    if (!doc) throw new Error(`DID not found: ${f.did}`)
    f.endpoint = getServiceEndpoint(doc, '#atproto_labeler') ?? null
    f.key = getVerificationKey(doc, '#atproto_label') ?? null
  }

  private async connect(f: Follow): Promise<void> {
    try {
      await this.resolve(f, false)
    } catch (err) {
      this.opts.log.info({ did: f.did, err: (err as Error).message }, 'labeler DID did not resolve; will retry')
      return
    }
    if (!f.endpoint || !f.key) {
      this.opts.log.info({ did: f.did }, 'labeler DID document has no #atproto_labeler service or #atproto_label key; will retry')
      return
    }
    const url = `${f.endpoint.replace(/\/+$/, '')}/xrpc/com.atproto.label.subscribeLabels`
    f.client = new SubscriptionClient({
      url,
      getCursor: async () => {
        const row = await this.opts.db.selectFrom('labeler_cursor').select('seq').where('did', '=', f.did).executeTakeFirst()
        return row ? Number(row.seq) : 0
      },
      onEvent: (evt) => this.handle(f, evt),
      onInfo: (info) => this.opts.log.info({ did: f.did, info }, 'labeler stream info'),
      onError: (err) => this.opts.log.debug({ did: f.did, err: err.message }, 'labeler stream error'),
      minBackoffMs: this.opts.minBackoffMs,
      maxBackoffMs: this.opts.maxBackoffMs,
    })
    f.client.start()
    this.opts.log.info({ did: f.did, url }, 'following labeler')
  }

  private async verify(f: Follow, label: IncomingLabel): Promise<boolean> {
    const check = () => {
      return f.key ? verifyLabel(label as unknown as Record<string, unknown>, f.key) : false
    }
    if (check()) return true
    // maybe the labeler rotated its key: look again, at most every 10 s
    if (Date.now() - f.refreshedAt < 10_000) return false
    f.refreshedAt = Date.now()
    try {
      await this.resolve(f, true)
    } catch {
      return false
    }
    return check()
  }

  private async handle(f: Follow, evt: StreamEvent): Promise<void> {
    if (evt.t !== '#labels') return
    const labels = Array.isArray(evt.body.labels) ? (evt.body.labels as unknown[]) : []
    for (const raw of labels) {
      const label = raw as IncomingLabel
      if (
        typeof label !== 'object' ||
        label === null ||
        typeof label.uri !== 'string' ||
        typeof label.val !== 'string' ||
        typeof label.cts !== 'string' ||
        label.val.length > 128
      ) {
        this.rejected.inc({ reason: 'invalid' })
        continue
      }
      if (label.src !== f.did) {
        this.rejected.inc({ reason: 'wrong-source' })
        continue
      }
      if (!(await this.verify(f, label))) {
        this.rejected.inc({ reason: 'bad-signature' })
        this.opts.log.warn({ did: f.did, uri: label.uri, val: label.val }, 'label with a bad signature dropped')
        continue
      }
      await storeLabel(this.opts.db, label)
      this.accepted.inc({ labeler: f.did })
    }
    if (evt.seq !== undefined) {
      const seq = evt.seq
      const updatedAt = new Date().toISOString()
      await this.opts.db
        .insertInto('labeler_cursor')
        .values({ did: f.did, seq, updatedAt })
        .onConflict((oc) => oc.column('did').doUpdateSet({ seq, updatedAt }))
        .execute()
    }
  }
}
