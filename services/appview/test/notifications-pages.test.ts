/**
 * listNotifications page by page (keyset cursor on (sortAt, recordUri), with and without a reasons
 * filter) equals the viewer's whole notification list read with a plain query, including notifications
 * that share a timestamp at page boundaries. On SQLite, and on PostgreSQL when STRATOS_TEST_PG_URL is set.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cidForCbor, jsonToLex } from '@stratos/core/data'
import type { AppViewServer } from '../src/server.js'
import { FakeNetwork, PG_URL, agentFor, startAppView, testDb, type Account, type TestDb } from './helpers.js'

const dialects: ('sqlite' | 'postgres')[] = PG_URL ? ['sqlite', 'postgres'] : ['sqlite']

describe.each(dialects)('listNotifications pages (%s)', (dialect) => {
  let net: FakeNetwork
  let db: TestDb
  let server: AppViewServer
  let viewer: Account

  beforeAll(async () => {
    net = await FakeNetwork.start()
    db = await testDb(dialect)
    server = await startAppView(net, db)
    viewer = await net.createAccount('viewer.test', { silent: true })
    const idx = server.ctx.indexer
    const index = async (did: string, collection: string, rkey: string, record: Record<string, unknown>) => {
      const full = { $type: collection, ...record }
      const cid = cidForCbor(jsonToLex(full)).toString()
      await idx.indexOne(`at://${did}/${collection}/${rkey}`, cid, full)
      return { uri: `at://${did}/${collection}/${rkey}`, cid }
    }
    const at = (n: number) => new Date(Date.UTC(2025, 0, 1, 0, 0, n)).toISOString()
    const post = await index(viewer.did, 'app.bsky.feed.post', 'p0', { text: 'hello', createdAt: at(0) })
    const dids = Array.from({ length: 30 }, (_, i) => `did:plc:np${String.fromCharCode(97 + Math.floor(i / 26), 97 + (i % 26)).padStart(22, 'a')}`)
    // likes, reposts and follows, many at shared timestamps
    for (const [i, did] of dids.entries()) {
      await index(did, 'app.bsky.feed.like', `l${i}`, { subject: post, createdAt: at(10 + (i % 4)) })
      if (i % 2) await index(did, 'app.bsky.feed.repost', `r${i}`, { subject: post, createdAt: at(10 + (i % 3)) })
      if (i % 3 === 0) await index(did, 'app.bsky.graph.follow', `f${i}`, { subject: viewer.did, createdAt: at(12) })
    }
  })

  afterAll(async () => {
    await server?.close()
    await net?.close()
    await db?.cleanup()
  })

  it('pages at sizes 1, 4 and 50, with and without reasons, equal the whole list', async () => {
    const agent = agentFor(server, viewer)
    for (const reasons of [undefined, ['like', 'follow']]) {
      let q = server.ctx.db.selectFrom('notification').select('recordUri').where('did', '=', viewer.did)
      if (reasons) q = q.where('reason', 'in', reasons)
      const all = (await q.orderBy('sortAt', 'desc').orderBy('recordUri', 'desc').execute()).map((r) => r.recordUri)
      expect(all.length).toBeGreaterThan(reasons ? 35 : 50)
      for (const limit of [1, 4, 50]) {
        const seen: string[] = []
        let cursor: string | undefined
        for (let guard = 0; guard < 200; guard++) {
          const { data } = await agent.app.bsky.notification.listNotifications({ limit, cursor, reasons })
          seen.push(...data.notifications.map((n) => n.uri))
          cursor = data.cursor
          if (!cursor) break
        }
        expect(seen, `limit ${limit}, reasons ${reasons}`).toEqual(all)
      }
    }
  })
})
