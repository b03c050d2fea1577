/**
 * Child process of pool-flags.test.ts, started with V8 / per-process flags a worker thread refuses: runs one
 * task on a KeyedWorkerPool and prints what came back (and the flags the workers got) as JSON.
 */
import { KeyedWorkerPool, workerExecArgv } from '../../src/workers/index.js'

const pool = new KeyedWorkerPool<{ n: number }, { n: number; thread: number }>({ size: 2, workerUrl: new URL('./echo-worker.ts', import.meta.url) })
try {
  await pool.ready()
  const res = await pool.run('k', { n: 7 })
  console.log(JSON.stringify({ res, execArgv: process.execArgv, workerExecArgv: workerExecArgv(), spaced: workerExecArgv(['--max-semi-space-size', '16', '--import', 'tsx']) }))
} finally {
  await pool.close()
}
