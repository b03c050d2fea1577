/**
 * Child process of img.test.ts: an AppView (its own process, so its RSS is measured alone) whose fake
 * PLC / PDS live in the parent. Argv: plcUrl, dataDir, did, JSON list of image CIDs to request at once.
 * Prints one JSON line: statuses, RSS before and peak during the attack.
 */
import { AppViewServer, readConfig } from '@stratos/appview'

const [plcUrl, dataDir, did, cidsJson] = process.argv.slice(2) as [string, string, string, string]
const config = readConfig({
  APPVIEW_PORT: '0',
  APPVIEW_DATA_DIRECTORY: dataDir,
  APPVIEW_PLC_URL: plcUrl,
  APPVIEW_DEV_MODE: 'true',
  APPVIEW_BACKFILL: 'false',
  LOG_LEVEL: 'silent',
})
const server = await AppViewServer.create(config)
const url = await server.xrpc.listen({ port: 0, host: '127.0.0.1' })
await server.ctx.db.insertInto('actor').values({ did, handle: 'victim.test', indexedAt: new Date().toISOString(), upstreamStatus: null }).execute()
const cids = JSON.parse(cidsJson) as string[]
// warm up the route once (code paths, allocations), then settle
await fetch(`${url}/img/feed_fullsize/plain/${did}/${cids[0]}@jpeg`).then((r) => r.arrayBuffer())
globalThis.gc?.()
await new Promise((r) => setTimeout(r, 200))
const before = process.memoryUsage().rss
let peak = before
const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10)
const statuses = await Promise.all(
  cids.map((cid) => fetch(`${url}/img/feed_fullsize/plain/${did}/${cid}@jpeg`).then(async (r) => ({ status: r.status, body: await r.text() }))),
)
clearInterval(sampler)
peak = Math.max(peak, process.memoryUsage().rss)
process.stdout.write(JSON.stringify({ statuses, before, peak }) + '\n')
await server.close()
process.exit(0)
