/** Test worker for KeyedWorkerPool: answers with the task's number and its thread id (and a copy of its bytes, if any), or throws. */
import { threadId } from 'node:worker_threads'
import { serveTasks } from '../../src/workers/pool.js'

serveTasks<{ n: number; fail?: boolean }, { n: number; thread: number; bytes?: number[]; viewOffset?: number }>(async ({ n, fail }, bytes) => {
  if (fail) throw new Error(`task ${n} failed`)
  await new Promise((r) => setTimeout(r, (n * 7) % 3))
  return bytes ? { n, thread: threadId, bytes: [...bytes], viewOffset: bytes.byteOffset } : { n, thread: threadId }
})
