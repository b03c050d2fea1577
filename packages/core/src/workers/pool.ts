/**
 * A fixed pool of worker threads (node:worker_threads) that runs tasks by key, each key's tasks in the order
 * they were submitted: while a key has tasks in flight (posted and not answered), its next ones go to the same
 * worker (a worker takes its messages in order and a handler that is synchronous, or awaited one at a time,
 * finishes them in that order); a key with nothing in flight goes to the least loaded worker (fewest tasks in
 * flight), since nothing of it can be overtaken there. So the load spreads by what is queued, not by a hash of
 * the keys (which, with few busy keys, left one worker with most of them).
 *
 * The worker module calls `serveTasks(handler)`. Tasks are batched: the tasks of one worker submitted during one
 * turn of the event loop go in one message (`{ batch: [{ id, req }...] }`, their transfer lists together),
 * and the worker answers with one message per batch of answers (`{ batch: [{ id, res } | { id, err }...] }`),
 * so the per-message cost (a postMessage, a wake-up of the other thread) is paid per batch, not per task.
 * Bytes given with `runBytes` travel together: the batch's byte strings are copied into ONE buffer, transferred
 * with the message (`{ batch, bytes }`; each task names its range), and the handler gets its range as a view
 * (one allocation and one transfer per batch instead of one per task).
 * A worker that dies rejects its tasks in flight and is started again.
 *
 * Sources or build: a worker URL ending in `.ts` (tests and benches running the TypeScript sources) is
 * started through a small bootstrap that registers tsx in the worker first; a `.js` URL starts directly.
 */
import { createRequire } from 'node:module'
import { writeFileSync } from 'node:fs'
import { Worker, parentPort, threadId, type Transferable, type WorkerOptions } from 'node:worker_threads'
import { pathToFileURL } from 'node:url'

export interface KeyedWorkerPoolOptions {
  /** worker threads (at least 1) */
  size: number
  /** the worker module (it calls `serveTasks`) */
  workerUrl: URL
  /** handed to every worker as `workerData` */
  workerData?: unknown
  /** thread name prefix (shown in diagnostics) */
  name?: string
  /** called when a worker dies unexpectedly (it is restarted) */
  onWorkerError?: (err: unknown, index: number) => void
}

interface InFlight {
  resolve: (v: any) => void
  reject: (e: unknown) => void
  /** the task's key (none for the pool's own pings) */
  key?: string
}

interface Slot {
  worker: Worker
  /** deaths in a row without an answer in between */
  failures: number
  inFlight: Map<number, InFlight>
  /** the worker's thread id (`threadId`) */
  threadId: number
  /** tasks not posted yet (sent at the end of the event-loop turn), with their bytes (runBytes) */
  outbox: { id: number; req: unknown; bytes?: Uint8Array }[]
  /** total length of the outbox's bytes */
  outboxBytes: number
  transfer: Transferable[]
}

/** An error a task handler threw, as the pool's caller sees it. */
export class WorkerTaskError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'WorkerTaskError'
  }
}


/** the parent's flags a worker never takes: main-script-only flags and flags for one thread's profile or GC */
function inheritable(a: string): boolean {
  return !a.startsWith('--input-type') && !a.startsWith('--cpu-prof-name') && a !== '--expose-gc' && a !== '--expose_gc'
}

/** flags a Worker refused, once found (V8 and per-process options: --max-old-space-size, --single-threaded-gc...) */
const refusedFlags = new Set<string>()

const flagName = (a: string): string => a.split('=', 1)[0]!

/** The parent's command-line flags a worker thread is started with: a loader such as tsx, not the refused ones. */
export function workerExecArgv(execArgv: readonly string[] = process.execArgv): string[] {
  const out: string[] = []
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i]!
    if (!inheritable(a)) continue
    if (refusedFlags.has(flagName(a))) {
      // a refused flag given as `--flag value`: its value goes too
      if (!a.includes('=') && execArgv[i + 1] !== undefined && !execArgv[i + 1]!.startsWith('-')) i++
      continue
    }
    out.push(a)
  }
  return out
}

/**
 * `new Worker` for a worker module (`.ts`: through tsx, for the sources), with the parent's flags (see {@link workerExecArgv}). Node refuses V8 and per-process options in a
 * worker's execArgv (ERR_WORKER_INVALID_EXEC_ARGV): an operator running `node --max-old-space-size=4096 ...` would
 * get no workers at all. The refused flags (named in the error) are left out, for this worker and the next ones;
 * they still apply to the main thread. Heap limits of a worker are `resourceLimits`.
 */
export function startWorker(workerUrl: URL, options: Omit<WorkerOptions, 'execArgv' | 'eval'> = {}): Worker {
  // the TypeScript sources (tests, benches): a bootstrap registers tsx in the worker, then loads the module
  let source: string | URL = workerUrl
  let isEval = false
  if (workerUrl.pathname.endsWith('.ts')) {
    const require = createRequire(import.meta.url)
    const tsxApi = pathToFileURL(require.resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href
    source =
      `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(workerUrl.href)}) })` +
      `.catch((err) => { setImmediate(() => { throw err }) })`
    isEval = true
  }
  for (let attempt = 0; ; attempt++) {
    try {
      return new Worker(source, { ...options, eval: isEval, execArgv: workerExecArgv() })
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      if (e.code !== 'ERR_WORKER_INVALID_EXEC_ARGV' || attempt > 0) throw err
      const listed = e.message.slice(e.message.indexOf(':') + 1).split(',').map((f) => flagName(f.trim())).filter((f) => f.startsWith('-'))
      if (listed.length === 0) throw err
      for (const f of listed) refusedFlags.add(f)
    }
  }
}

interface Answer<Res> {
  id: number
  res?: Res
  err?: string
}

/** a worker that dies this many times in a row without answering a task is not started again */
const MAX_RESTARTS = 5

export class KeyedWorkerPool<Req, Res> {
  private readonly slots: Slot[] = []
  private nextId = 1
  private closed = false
  private pendingCount = 0
  private broken: Error | null = null
  private flushScheduled: NodeJS.Immediate | null = null
  /** the keys with tasks in flight: their worker and how many (a key moves only when none is in flight) */
  private readonly keys = new Map<string, { index: number; n: number }>()

  constructor(private readonly o: KeyedWorkerPoolOptions) {
    if (!Number.isInteger(o.size) || o.size < 1) throw new RangeError(`worker pool size must be an integer >= 1, got ${o.size}`)
    for (let i = 0; i < o.size; i++) this.slots.push(this.spawn(i))
  }

  get size(): number {
    return this.slots.length
  }

  /** Tasks posted and not yet answered. */
  get pending(): number {
    return this.pendingCount
  }

  /** The thread ids of the workers (node:worker_threads `threadId`), in pool order. */
  threadIds(): number[] {
    return this.slots.map((s) => s.threadId)
  }

  /**
   * The worker index a key's next task goes to: the worker its tasks in flight are on, or else the one with the
   * fewest tasks in flight (the first of them on a tie).
   */
  indexOf(key: string): number {
    const k = this.keys.get(key)
    if (k) return k.index
    let best = 0
    for (let i = 1; i < this.slots.length; i++) if (this.slots[i]!.inFlight.size < this.slots[best]!.inFlight.size) best = i
    return best
  }

  /** A task of `key` is answered or failed. */
  private settled(key: string | undefined): void {
    if (key === undefined) return
    const k = this.keys.get(key)
    if (k && --k.n === 0) this.keys.delete(key)
  }

  /** Runs `req` on the key's worker; resolves with the handler's result, rejects with its error. */
  run(key: string, req: Req, transfer?: readonly Transferable[]): Promise<Res> {
    return this.submit(key, req, undefined, transfer)
  }

  /**
   * `run` with a byte string for the handler (its second argument, a view valid during the task): the bytes
   * are copied (at the end of the event-loop turn) into the one buffer that carries the batch's bytes to the
   * worker, so `bytes` may be a view into a larger buffer (a socket's read) and must not change until then.
   */
  runBytes(key: string, req: Req, bytes: Uint8Array): Promise<Res> {
    return this.submit(key, req, bytes, undefined)
  }

  private submit(key: string, req: Req, bytes: Uint8Array | undefined, transfer: readonly Transferable[] | undefined): Promise<Res> {
    if (this.closed) return Promise.reject(new Error('the worker pool is closed'))
    if (this.broken) return Promise.reject(new Error(`the worker pool is broken: ${this.broken.message}`))
    const index = this.indexOf(key)
    const slot = this.slots[index]!
    const id = this.nextId++
    const k = this.keys.get(key)
    if (k) k.n++
    else this.keys.set(key, { index, n: 1 })
    return new Promise<Res>((resolve, reject) => {
      slot.inFlight.set(id, { resolve, reject, key })
      if (slot.inFlight.size === 1) slot.worker.ref() // a task in flight keeps the process alive
      this.pendingCount++
      if (bytes) {
        slot.outbox.push({ id, req, bytes })
        slot.outboxBytes += bytes.byteLength
      } else slot.outbox.push({ id, req })
      if (transfer) for (const t of transfer) slot.transfer.push(t)
      this.flushScheduled ??= setImmediate(this.flush)
    })
  }

  /** Posts each worker's pending tasks in one message. */
  private readonly flush = (): void => {
    this.flushScheduled = null
    for (const slot of this.slots) {
      if (slot.outbox.length === 0) continue
      const tasks = slot.outbox
      const transfer = slot.transfer
      const total = slot.outboxBytes
      slot.outbox = []
      slot.transfer = []
      slot.outboxBytes = 0
      const batch: { id: number; req: unknown; at?: number; len?: number }[] = new Array(tasks.length)
      let bytes: ArrayBuffer | undefined
      if (total > 0) {
        // every task's bytes in one buffer of its own (transferred, not copied again)
        const all = new Uint8Array(total)
        let at = 0
        for (let i = 0; i < tasks.length; i++) {
          const t = tasks[i]!
          if (t.bytes) {
            all.set(t.bytes, at)
            batch[i] = { id: t.id, req: t.req, at, len: t.bytes.byteLength }
            at += t.bytes.byteLength
          } else batch[i] = { id: t.id, req: t.req }
        }
        bytes = all.buffer
        transfer.push(bytes)
      } else for (let i = 0; i < tasks.length; i++) batch[i] = { id: tasks[i]!.id, req: tasks[i]!.req }
      try {
        slot.worker.postMessage(bytes ? { batch, bytes } : { batch }, transfer)
      } catch (err) {
        // (a request that cannot be cloned): fail the batch's tasks, not the pool
        for (const { id } of batch) {
          const t = slot.inFlight.get(id)
          if (!t) continue
          slot.inFlight.delete(id)
          this.pendingCount--
          this.settled(t.key)
          t.reject(err)
        }
        if (slot.inFlight.size === 0) slot.worker.unref()
      }
    }
  }

  /** Resolves once every worker has started and answers (a worker that cannot start rejects it). */
  async ready(): Promise<void> {
    await Promise.all(
      this.slots.map(
        (slot) =>
          new Promise<void>((resolve, reject) => {
            const id = this.nextId++
            slot.inFlight.set(id, { resolve: () => resolve(), reject })
            if (slot.inFlight.size === 1) slot.worker.ref()
            this.pendingCount++
            slot.worker.postMessage({ id, ping: true })
          }),
      ),
    )
  }

  /** Stops every worker; tasks in flight reject. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.flushScheduled) clearImmediate(this.flushScheduled)
    this.flushScheduled = null
    await Promise.all(
      this.slots.map(async (slot) => {
        this.failAll(slot, new Error('the worker pool is closed'))
        await slot.worker.terminate()
      }),
    )
  }

  private spawn(index: number): Slot {
    // the parent's flags (a loader such as tsx), minus those a worker refuses (startWorker)
    const worker = startWorker(this.o.workerUrl, {
      workerData: this.o.workerData,
      name: `${this.o.name ?? 'pool'}-${index}`,
      env: { ...process.env, STRATOS_WORKER_NAME: `${this.o.name ?? 'pool'}-${index}` },
    })
    const slot: Slot = {
      worker,
      failures: this.slots[index]?.failures ?? 0,
      inFlight: new Map(),
      threadId: worker.threadId,
      outbox: [],
      outboxBytes: 0,
      transfer: [],
    }
    const answer = (msg: Answer<Res>) => {
      const t = slot.inFlight.get(msg.id)
      if (!t) return
      slot.failures = 0
      slot.inFlight.delete(msg.id)
      if (slot.inFlight.size === 0) slot.worker.unref()
      this.pendingCount--
      this.settled(t.key)
      if (msg.err !== undefined) t.reject(new WorkerTaskError(msg.err))
      else t.resolve(msg.res)
    }
    worker.on('message', (msg: Answer<Res> | { batch: Answer<Res>[] }) => {
      if ('batch' in msg) for (const a of msg.batch) answer(a)
      else answer(msg)
    })
    const died = (err: unknown) => {
      if (this.closed || this.slots[index] !== slot) return
      this.o.onWorkerError?.(err, index)
      const error = err instanceof Error ? err : new Error(String(err))
      this.failAll(slot, error)
      slot.failures++
      if (slot.failures >= MAX_RESTARTS) {
        // it cannot even start: stop retrying, fail its tasks from now on
        this.broken ??= error
        return
      }
      this.slots[index] = this.spawn(index)
    }
    worker.on('error', died)
    worker.on('exit', (code) => died(new Error(`worker ${index} exited with code ${code}`)))
    // an idle pool does not keep the process alive by itself
    worker.unref()
    return slot
  }

  private failAll(slot: Slot, err: unknown): void {
    for (const t of slot.inFlight.values()) {
      this.pendingCount--
      this.settled(t.key)
      t.reject(err)
    }
    slot.inFlight.clear()
  }
}

/**
 * In a worker module: answers the pool's tasks with `handler`, one at a time in arrival order (a handler
 * that returns a promise is awaited before the next task starts, so per-key order holds). A task submitted with
 * `runBytes` gets its bytes as the second argument: a view into the batch's buffer, which the answer must not
 * carry back (copy what it returns: a view would clone the whole buffer).
 */
export function serveTasks<Req, Res>(handler: (req: Req, bytes?: Uint8Array) => Res | Promise<Res>): void {
  const port = parentPort
  if (!port) throw new Error('serveTasks must run in a worker thread')
  nameThisThread(process.env.STRATOS_WORKER_NAME ?? `worker-${threadId}`)
  const queue: { id: number; req: Req; bytes?: Uint8Array }[] = []
  let head = 0
  let busy = false
  let replies: Answer<Res>[] = []
  let firstReplyAt = 0
  const send = () => {
    if (replies.length === 0) return
    const batch = replies
    replies = []
    port.postMessage({ batch })
  }
  const drain = async () => {
    busy = true
    while (head < queue.length) {
      const { id, req, bytes } = queue[head]!
      queue[head++] = undefined as never
      if (head > 1024 && head * 2 > queue.length) {
        queue.splice(0, head)
        head = 0
      }
      try {
        const res = await handler(req, bytes)
        replies.push({ id, res })
      } catch (err) {
        replies.push({ id, err: (err as Error)?.message ?? String(err) })
      }
      // answers go back in batches: when nothing is left to do, or every 64 answers / 5 ms
      if (replies.length === 1) firstReplyAt = performance.now()
      if (replies.length >= 64 || performance.now() - firstReplyAt > 5) send()
    }
    queue.length = 0
    head = 0
    send()
    busy = false
  }
  port.on('message', (msg: { id: number; req: Req; ping?: true } | { batch: { id: number; req: Req; at?: number; len?: number }[]; bytes?: ArrayBuffer }) => {
    if ('batch' in msg) {
      const all = msg.bytes
      for (const t of msg.batch) {
        // (runBytes: the task's range of the batch's buffer)
        queue.push(all && t.len !== undefined ? { id: t.id, req: t.req, bytes: new Uint8Array(all, t.at, t.len) } : { id: t.id, req: t.req })
      }
    } else {
      if (msg.ping) return void port.postMessage({ id: msg.id, res: null })
      queue.push(msg)
    }
    if (!busy) void drain()
  })
}

/**
 * Linux: names the calling thread (what `top -H` and /proc/<pid>/task/<tid>/comm show; at most 15 bytes), so
 * per-thread CPU can be told apart from outside. Best effort: elsewhere it does nothing.
 */
export function nameThisThread(name: string): void {
  if (process.platform !== 'linux') return
  try {
    writeFileSync('/proc/thread-self/comm', name.slice(0, 15))
  } catch {
    // not available (old kernel, restricted /proc): the thread keeps its name
  }
}
