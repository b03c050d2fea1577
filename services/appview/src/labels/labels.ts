/**
 * Labels in the AppView: which labelers a request accepts (`atproto-accept-labelers`), the stored
 * labels from the labelers it follows, and self-labels carried by records.
 */
import type { Kysely } from 'kysely'
import type { DatabaseSchema } from '../indexer/schema.js'

type Db = Kysely<DatabaseSchema>

/** The record a labeler account publishes (rkey self) to declare its label values and policies. */
export const LABELER_COLLECTION = 'app.bsky.labeler.service'

/** a labeler a request accepts; `redact`: the client asked for its takedown-class labels to remove content */
export interface AcceptedLabeler {
  did: string
  redact: boolean
}

/** At most this many labelers are applied to one request (as the reference AppView). */
export const MAX_LABELERS = 20

const DID_RE = /^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/

/**
 * Parses `atproto-accept-labelers: did:plc:a;redact, did:plc:b`. Undefined when the header is absent
 * (then the AppView's default labelers apply); malformed entries are skipped.
 */
export function parseAcceptLabelers(header: string | string[] | undefined): AcceptedLabeler[] | undefined {
  if (header === undefined) return undefined
  const raw = Array.isArray(header) ? header.join(',') : header
  const out: AcceptedLabeler[] = []
  for (const part of raw.split(',')) {
    const [didRaw, ...params] = part.split(';').map((s) => s.trim())
    if (!didRaw || !DID_RE.test(didRaw)) continue
    if (out.some((l) => l.did === didRaw)) continue
    out.push({ did: didRaw, redact: params.some((p) => p.toLowerCase() === 'redact') })
    if (out.length >= MAX_LABELERS) break
  }
  return out
}

/** The `atproto-content-labelers` response header: the labelers whose labels were applied. */
export function formatContentLabelers(labelers: AcceptedLabeler[]): string {
  return labelers.map((l) => (l.redact ? `${l.did};redact` : l.did)).join(',')
}

/** com.atproto.label.defs#label as views carry it (without the signature) */
export interface ViewLabel {
  ver?: number
  src: string
  uri: string
  cid?: string
  val: string
  neg?: boolean
  cts: string
  exp?: string
}

/** Self-labels of a record (`labels: {$type: com.atproto.label.defs#selfLabels, values: [{val}]}`). */
export function selfLabels(uri: string, cid: string, creator: string, record: Record<string, unknown>, cts: string): ViewLabel[] {
  const labels = record.labels
  if (typeof labels !== 'object' || labels === null) return []
  const l = labels as { $type?: unknown; values?: unknown }
  if (l.$type !== 'com.atproto.label.defs#selfLabels' || !Array.isArray(l.values)) return []
  const out: ViewLabel[] = []
  for (const v of l.values) {
    if (typeof v === 'object' && v !== null && typeof (v as { val?: unknown }).val === 'string') {
      const val = (v as { val: string }).val
      if (val.length > 0 && val.length <= 128) out.push({ src: creator, uri, cid, val, cts })
    }
  }
  return out
}

/** A label as received on a labeler's stream (decoded DAG-CBOR). */
export interface IncomingLabel {
  ver?: number
  src: string
  uri: string
  cid?: string
  val: string
  neg?: boolean
  cts: string
  exp?: string
  sig?: Uint8Array
}

/**
 * Stores one verified label: the newest (by `cts`) per (src, uri, val) wins; a negation removes the
 * value. Returns whether anything changed.
 */
export async function storeLabel(db: Db, label: IncomingLabel): Promise<boolean> {
  const current = await db
    .selectFrom('label')
    .select('cts')
    .where('src', '=', label.src)
    .where('uri', '=', label.uri)
    .where('val', '=', label.val)
    .executeTakeFirst()
  if (current && current.cts > label.cts) return false
  if (label.neg) {
    if (!current) return false
    await db.deleteFrom('label').where('src', '=', label.src).where('uri', '=', label.uri).where('val', '=', label.val).execute()
    return true
  }
  const row = {
    src: label.src,
    uri: label.uri,
    cid: label.cid ?? null,
    val: label.val,
    cts: label.cts,
    exp: label.exp ?? null,
    sig: label.sig ? Buffer.from(label.sig).toString('base64') : null,
  }
  await db
    .insertInto('label')
    .values(row)
    .onConflict((oc) => oc.columns(['src', 'uri', 'val']).doUpdateSet({ cid: row.cid, cts: row.cts, exp: row.exp, sig: row.sig }))
    .execute()
  return true
}

/** Current (unexpired) labels on `uris` from `srcs`, grouped by subject URI. */
export async function labelsFor(db: Db, uris: string[], srcs: string[], now = new Date()): Promise<Map<string, ViewLabel[]>> {
  const out = new Map<string, ViewLabel[]>()
  if (uris.length === 0 || srcs.length === 0) return out
  const nowIso = now.toISOString()
  for (let i = 0; i < uris.length; i += 500) {
    const rows = await db
      .selectFrom('label')
      .selectAll()
      .where('uri', 'in', uris.slice(i, i + 500))
      .where('src', 'in', srcs)
      .where((eb) => eb.or([eb('exp', 'is', null), eb('exp', '>', nowIso)]))
      .orderBy('cts', 'asc')
      .execute()
    for (const r of rows) {
      const label: ViewLabel = { ver: 1, src: r.src, uri: r.uri, val: r.val, cts: r.cts }
      if (r.cid) label.cid = r.cid
      if (r.exp) label.exp = r.exp
      let list = out.get(r.uri)
      if (!list) out.set(r.uri, (list = []))
      list.push(label)
    }
  }
  return out
}
