/**
 * Worker thread entry of ReadPool (read-pool.ts): answers the read-only methods (WORKER_METHODS) with the
 * same handlers as the main thread, on a read-only connection of its own.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { openSqlite } from '@stratos/core/db'
import { validateOutput } from '@stratos/core/lexicon'
import { nameThisThread } from '@stratos/core/workers'
import { XRPCError, type AuthVerifier, type HandlerOutput, type MethodConfig, type MethodHandler, type XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../context.js'
import { Hydrator } from '../hydration/hydrator.js'
import { ReadCache, cacheReads, readDirectly } from '../hydration/sql.js'
import { ChangeReader } from '../hydration/change-feed.js'
import type { DatabaseSchema } from '../indexer/schema.js'
import { runSerialWithLabelers } from '../labels/request.js'
import { Views } from '../views/views.js'
import { methods } from './index.js'
import { READ_MMAP_BYTES, WORKER_METHODS, jsonBytes, type ReadResult, type ReadTask } from './read-pool.js'

const data = workerData as { dbPath: string; modServiceDid?: string; name: string; cacheRows: number; changes?: SharedArrayBuffer }
const port = parentPort!
nameThisThread(data.name)

const database = openSqlite<DatabaseSchema>(data.dbPath, { readonly: true, statementCache: 1000 })
const sqlite = database.sqlite!
// pages read through a memory map of the file (WAL frames are still read with pread): a page is then not copied
// into the connection's page cache (2 MB by default, far smaller than the database, so most of a request's pages
// were fetched from the OS with a pread each). Address space only; the OS page cache holds the pages either way.
sqlite.pragma(`mmap_size = ${READ_MMAP_BYTES}`)
// every request runs in one read transaction of this connection (below): the handlers' statements are
// part of it, so they go to the handle directly
readDirectly(database.db, { inTransaction: false, prepare: (source) => sqlite.prepare(source) })
// statement results kept while what they read does not change (checked at the start of every request:
// data_version, and what the writer's change feed says it touched)
const cache = data.cacheRows > 0 ? new ReadCache(data.cacheRows) : null
const changes = cache && data.changes ? new ChangeReader(data.changes) : null
if (cache) cacheReads(database.db, cache)
const hydrator = new Hydrator(database.db, data.modServiceDid ? { modServiceDid: data.modServiceDid } : {})
const views = new Views({ publicUrl: 'http://localhost' })
const begin = sqlite.prepare('BEGIN')
const commit = sqlite.prepare('COMMIT')
const repoRev = sqlite.prepare('SELECT rev FROM repo_state WHERE did = ?').pluck()
// (any read starts the transaction's snapshot; data_version then says whether another connection committed since the last one)
const snapshot = sqlite.prepare('SELECT 1 FROM sqlite_master LIMIT 1')
const dataVersion = sqlite.prepare('PRAGMA data_version').pluck()

// the handlers, registered as the main thread registers them, with a context that only reads
const noAuth: AuthVerifier<never> = () => {
  throw new Error('read workers do not authenticate')
}
const ctx = {
  database,
  db: database.db,
  hydrator,
  views,
  auth: { optional: noAuth, required: noAuth, admin: noAuth },
} as unknown as AppContext
const handlers = new Map<string, MethodHandler<any, any>>()
const collector = {
  method(nsid: string, configOrHandler: MethodConfig<any, any> | MethodHandler<any, any>) {
    if (WORKER_METHODS.has(nsid)) handlers.set(nsid, typeof configOrHandler === 'function' ? configOrHandler : configOrHandler.handler)
    return collector
  },
} as unknown as XrpcServer
for (const register of methods) register(collector, ctx)

async function answer(task: ReadTask): Promise<ReadResult> {
  const handler = handlers.get(task.nsid)
  if (!handler) throw new Error(`not a read worker method: ${task.nsid}`)
  if (views.publicUrl !== task.publicUrl) views.publicUrl = task.publicUrl
  begin.run()
  try {
    if (cache) {
      // (how far the writer's changes had settled, read before the snapshot starts; what it wrote, after)
      const settled = changes?.settled() ?? 0
      snapshot.get()
      cache.begin(Number(dataVersion.get()), changes?.read(settled))
    }
    const headers: Record<string, string> = {}
    if (task.viewer) {
      const rev = repoRev.get(task.viewer) as string | undefined
      if (rev !== undefined) headers['atproto-repo-rev'] = rev
    }
    const call = { nsid: task.nsid, params: task.params, auth: { credentials: task.viewer ? { iss: task.viewer } : null } }
    // (one request at a time in this thread: the labelers in a variable, no AsyncLocalStorage)
    const out = (await runSerialWithLabelers(task.labelers, async () => handler(call as never))) as HandlerOutput
    if (task.validate) {
      try {
        validateOutput(task.nsid, out.encoding, out.body)
      } catch (err) {
        return { ok: false, status: 500, error: 'InternalServerError', message: `Invalid output for ${task.nsid}: ${(err as Error).message}`, headers: {} }
      }
    }
    return { ok: true, body: jsonBytes(out.body), headers: { ...out.headers, ...headers } }
  } catch (err) {
    if (err instanceof XRPCError) return { ok: false, status: err.status, error: err.error, message: err.message, headers: err.headers as Record<string, string> }
    throw err
  } finally {
    commit.run()
  }
}

// one request at a time (each in its own transaction of the one connection), in arrival order
let queue: Promise<void> = Promise.resolve()
port.on('message', (m: { id: number; task?: ReadTask; stats?: true }) => {
  if (m.stats) {
    port.postMessage({ id: m.id, stats: { hits: cache?.hits ?? 0, misses: cache?.misses ?? 0, kept: cache?.size ?? 0, postVersions: hydrator.postVersionStats(), mmapBytes: Number(sqlite.pragma('mmap_size', { simple: true })) } })
    return
  }
  queue = queue.then(() =>
    answer(m.task!).then(
      (res) => port.postMessage({ id: m.id, res }, res.ok ? [res.body.buffer as ArrayBuffer] : []),
      (err: unknown) => port.postMessage({ id: m.id, err: (err as Error)?.message ?? String(err) }),
    ),
  )
})
port.postMessage({ ready: true })
