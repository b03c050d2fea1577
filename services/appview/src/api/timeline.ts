/**
 * The Following timeline's skeleton: the page of feed items (posts and reposts) of the accounts the
 * viewer follows and of the viewer, newest first by (sortAt, uri), after an optional keyset cursor.
 *
 * Read in two bounded steps instead of sorting every item of every followed account:
 * 1. one index seek per account (feed_item_originator_idx) finds its newest item before the cursor; the
 *    accounts come back newest first, at most 2 × limit of them. The `limit`-th newest is a lower bound
 *    of the page: that many accounts each have an item at or after it, so no older item can be in it.
 * 2. the page: items at or after that bound, before the cursor, of the accounts whose newest item is at
 *    or after it (at most `limit` accounts, unless several share the bound's timestamp: then all the
 *    followed accounts). With fewer active accounts than `limit`, each one's newest items are read and
 *    merged.
 */
import type { Db } from '../indexer/indexer.js'
import { fixedRows, type Arg } from '../hydration/sql.js'
import type { KeysetCursor } from './util.js'

export interface TimelineRow {
  uri: string
  type: string
  postUri: string
  originatorDid: string
  sortAt: string
}

/** (sortAt, uri) strictly below the cursor: the condition's text and its arguments */
function below(c: KeysetCursor | undefined): [string, Arg[]] {
  return c ? [' AND fi."sortAt" <= ? AND (fi."sortAt" < ? OR fi.uri < ?)', [c.primary, c.primary, c.secondary]] : ['', []]
}

const COLS = 'fi.uri AS uri, fi.type AS type, fi."postUri" AS "postUri", fi."originatorDid" AS "originatorDid", fi."sortAt" AS "sortAt"'

/** (sortAt, uri) descending */
function newestFirst(a: TimelineRow, b: TimelineRow): number {
  if (a.sortAt !== b.sortAt) return a.sortAt < b.sortAt ? 1 : -1
  return a.uri < b.uri ? 1 : a.uri > b.uri ? -1 : 0
}

/**
 * Step 1's statement (`cond`: the cursor's condition or nothing): the followed accounts' newest items, newest
 * first (the viewer's own: ownNewestSql). The follows are read straight from the index, not merged with the
 * viewer in a UNION: that built a temporary b-tree of 1,001 DIDs to drop duplicates (~20 % of the step).
 */
export function newestItemsSql(cond: string): string {
  return `SELECT f."subjectDid" AS did,
      (SELECT fi."sortAt" FROM feed_item fi WHERE fi."originatorDid" = f."subjectDid"${cond} ORDER BY fi."sortAt" DESC LIMIT 1) AS latest
    FROM follow f WHERE f.creator = ? AND f."subjectDid" <> ?
    ORDER BY latest DESC NULLS LAST LIMIT ?`
}

/**
 * Step 1 of a first page (no cursor): each followed account's newest item time from author_latest (one small
 * row per account, kept by triggers on feed_item: indexer/migrations.ts); accounts without items have no row.
 */
export const NEWEST_SQL = `SELECT f."subjectDid" AS did, l."sortAt" AS latest
    FROM follow f JOIN author_latest l ON l.did = f."subjectDid"
    WHERE f.creator = ? AND f."subjectDid" <> ?
    ORDER BY l."sortAt" DESC LIMIT ?`

/** The viewer's own newest item (step 1). */
export function ownNewestSql(cond: string): string {
  return `SELECT fi."sortAt" AS latest FROM feed_item fi WHERE fi."originatorDid" = ?${cond} ORDER BY fi."sortAt" DESC LIMIT 1`
}

/** Step 2's accounts when they are not listed: all the followed ones and the viewer (parameters: the viewer twice). */
const FOLLOWED_ACCOUNTS = 'fi."originatorDid" IN (SELECT f."subjectDid" FROM follow f WHERE f.creator = ? UNION SELECT ?)'

/**
 * Step 2's statement: the page from the bound on, among the accounts listed in step 1 (`listed`: the list is
 * the first parameter and drives the join, one feed_item_originator_idx seek per account; `IN ?L` first built
 * a temporary index of the list) or among all the followed accounts. Parameters: pageArgs.
 *
 * The accounts of the page often have many items after the bound (their newest ones are all newer than it:
 * ~3,700 for 50 accounts at the 1M-record bench size); sorting them all read each one's row for the sort's
 * uri and the answer's columns. A first pass over the index alone (originatorDid, sortAt: covering) finds the
 * `limit`-th newest time among them, a tighter bound: the page's items are all at or after it, so the rows
 * are read for those only (~50). Without `limit` items after the bound, the bound stays.
 */
export function pageSql(listed: boolean, cond: string): string {
  const from = listed ? `?J j JOIN feed_item fi ON fi."originatorDid" = j.value WHERE` : `feed_item fi WHERE ${FOLLOWED_ACCOUNTS} AND`
  const tighter = `(SELECT fi."sortAt" FROM ${from} fi."sortAt" >= ?${cond} ORDER BY fi."sortAt" DESC LIMIT 1 OFFSET ?)`
  return `SELECT ${COLS} FROM ${from} fi."sortAt" >= coalesce(${tighter}, ?)${cond}
    ORDER BY fi."sortAt" DESC, fi.uri DESC LIMIT ?`
}

/** pageSql's parameters: the accounts (the list, or the viewer twice), the bound, the cursor's condition, the page size. */
export function pageArgs(accountArgs: Arg[], bound: string, condArgs: Arg[], limit: number): Arg[] {
  return [...accountArgs, ...accountArgs, bound, ...condArgs, limit - 1, bound, ...condArgs, limit]
}

/**
 * The page of the viewer's Following timeline after `cursor` (at most `limit` rows, newest first). The
 * statements are fixed texts (one per shape: with or without a cursor...), run through fixedRows.
 */
export async function timelineSkeleton(db: Db, viewer: string, limit: number, cursor: KeysetCursor | undefined): Promise<TimelineRow[]> {
  const [cond, condArgs] = below(cursor)
  // 1. each account's newest item before the cursor (the viewer's own and the followed ones), newest first
  const followed = await fixedRows<{ did: string; latest: string | null }>(db, cursor ? newestItemsSql(cond) : NEWEST_SQL, [...condArgs, viewer, viewer, 2 * limit])
  const [own] = await fixedRows<{ latest: string | null }>(db, ownNewestSql(cond), [viewer, ...condArgs], { keyed: true })
  const active = followed.filter((r): r is { did: string; latest: string } => r.latest !== null)
  if (own?.latest != null) {
    // the viewer's newest item in its place among the followed accounts' (newest first), then the newest 2 × limit
    const at = active.findIndex((r) => r.latest < own.latest!)
    active.splice(at < 0 ? active.length : at, 0, { did: viewer, latest: own.latest })
    if (active.length > 2 * limit) active.length = 2 * limit
  }
  if (active.length < limit) {
    // few accounts have items: the newest `limit` of each, merged
    const lists = await Promise.all(
      active.map((r) =>
        fixedRows<TimelineRow>(
          db,
          `SELECT ${COLS} FROM feed_item fi WHERE fi."originatorDid" = ?${cond} ORDER BY fi."sortAt" DESC, fi.uri DESC LIMIT ?`,
          [r.did, ...condArgs, limit],
          // (one account's items: kept across writes of other accounts)
          { keyed: true },
        ),
      ),
    )
    return lists.flat().sort(newestFirst).slice(0, limit)
  }
  // 2. the page, between the bound and the cursor
  const bound = active[limit - 1]!.latest
  const inPage = active.filter((r) => r.latest >= bound).map((r) => r.did)
  // more accounts than were listed may share the bound's timestamp: then ask among all of them
  const listed = inPage.length < active.length || active.length < 2 * limit
  const accountArgs: Arg[] = listed ? [{ list: inPage }] : [viewer, viewer]
  // (the listed accounts' items: kept across writes of other accounts; the variant that reads the follows is not keyed)
  return fixedRows<TimelineRow>(db, pageSql(listed, cond), pageArgs(accountArgs, bound, condArgs, limit), { keyed: listed })
}
