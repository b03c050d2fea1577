/**
 * Test worker for KeyedWorkerPool: answers with the task's number, its thread id and the order in which this
 * thread started it (`seq`), and a copy of its bytes if any; or throws.
 */
import { threadId } from 'node:worker_threads'
import { serveTasks } from '../../src/workers/pool.js'

let started = 0

serveTasks<{ n: number; fail?: boolean }, { n: number; thread: number; seq: number; bytes?: number[]; viewOffset?: number }>(async ({ n, fail }, bytes) => {
  const seq = started++
  if (fail) throw new Error(`task ${n} failed`)
  await new Promise((r) => setTimeout(r, (n * 7) % 3))
  return bytes ? { n, thread: threadId, seq, bytes: [...bytes], viewOffset: bytes.byteOffset } : { n, thread: threadId, seq }
})
