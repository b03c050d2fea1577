/**
 * A fast "surely valid" check for the records most of a repo holds: likes, reposts and follows (~70 % of a
 * network's records), in their plain form. It answers true only for a record whose every field has a shape
 * the lexicon (app.bsky.feed.like / repost, app.bsky.graph.follow) certainly accepts, written narrower than
 * the lexicon's rules (a did:plc, a post or feed generator URI of one, a CIDv1 dag-cbor sha-256 in base32,
 * a UTC datetime of the usual form); anything else (an extra field, another DID method, a lenient datetime)
 * answers false and goes to @atproto/lexicon's validation as before. The library's validation was about a
 * quarter of a repo check's CPU in the backfill's workers (perf, 1M-record bench; its string formats: CID
 * parse, AT-URI and datetime parsers). services/appview/test/fast-valid.test.ts holds it against the library.
 */

const DID_PLC = /^did:plc:[a-z2-7]{24}$/
/** a post or feed generator of a did:plc, its record key lower-case letters and digits (a TID among them) */
const SUBJECT_URI = /^at:\/\/did:plc:[a-z2-7]{24}\/app\.bsky\.feed\.(?:post|generator)\/[a-z0-9]{1,64}$/
/**
 * CIDv1, dag-cbor, sha2-256 in base32: 'bafyrei' + 52 characters. The first of them carries the last two
 * bits of the digest length (0x20: zero, so a-h), the last two bits past the digest (zero: a, e, i, m, q,
 * u, y or 4)
 */
const CID_DAG_CBOR = /^bafyrei[a-h][a-z2-7]{50}[aeimquy4]$/
/** RFC 3339 in UTC, seconds present, at most millisecond digits */
const DATETIME = /^[12][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,3})?Z$/

function plainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  const proto = Object.getPrototypeOf(v) as unknown
  return proto === Object.prototype || proto === null
}

function datetime(v: unknown): boolean {
  if (typeof v !== 'string' || !DATETIME.test(v)) return false
  // a day the month has (2024-02-30 passes the pattern): the date's own fields read back the same
  const d = new Date(v)
  return d.getUTCDate() === Number(v.slice(8, 10))
}

/** A strongRef ({uri, cid} and nothing else) to a post or feed generator of a did:plc. */
function strongRef(v: unknown): boolean {
  if (!plainObject(v)) return false
  let n = 0
  for (const k in v) {
    if (k !== 'uri' && k !== 'cid') return false
    n++
  }
  if (n !== 2) return false
  const { uri, cid } = v
  return typeof uri === 'string' && typeof cid === 'string' && SUBJECT_URI.test(uri) && CID_DAG_CBOR.test(cid)
}

/**
 * True when `record` (JSON form) of `collection` surely passes the lexicon; false means "not decided here"
 * (validate it the usual way), never "invalid".
 */
export function surelyValid(collection: string, record: Record<string, unknown>): boolean {
  const follow = collection === 'app.bsky.graph.follow'
  if (!follow && collection !== 'app.bsky.feed.like' && collection !== 'app.bsky.feed.repost') return false
  if (!plainObject(record) || record.$type !== collection) return false
  for (const k in record) if (k !== '$type' && k !== 'subject' && k !== 'createdAt' && k !== 'via') return false
  if (!datetime(record.createdAt)) return false
  if (record.via !== undefined && !strongRef(record.via)) return false
  if (follow) return typeof record.subject === 'string' && DID_PLC.test(record.subject)
  return strongRef(record.subject)
}
