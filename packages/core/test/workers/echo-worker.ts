/** Test worker for KeyedWorkerPool: answers with the task's number and its thread id, or throws. */
import { threadId } from 'node:worker_threads'
import { serveTasks } from '../../src/workers/pool.js'

serveTasks<{ n: number; fail?: boolean }, { n: number; thread: number }>(async ({ n, fail }) => {
  if (fail) throw new Error(`task ${n} failed`)
  await new Promise((r) => setTimeout(r, (n * 7) % 3))
  return { n, thread: threadId }
})
