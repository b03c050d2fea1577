/** Worker thread entry of CommitVerifier (verify.ts): answers VerifyTasks in arrival order. */
import { workerData } from 'node:worker_threads'
import { serveTasks } from './pool.js'
import { preloadLexicons, runVerifyTask, type PortableSummary, type VerifyTask } from './verify.js'

// (a pool made for `withRecords: 'json'`: the lexicons loaded before the first task, not during it)
if ((workerData as { lexicons?: boolean } | undefined)?.lexicons) await preloadLexicons()
serveTasks<VerifyTask, PortableSummary>(runVerifyTask)
