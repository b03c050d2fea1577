/** Worker thread entry of CommitVerifier (verify.ts): answers VerifyTasks in arrival order. */
import { serveTasks } from './pool.js'
import { runVerifyTask, type PortableSummary, type VerifyTask } from './verify.js'

serveTasks<VerifyTask, PortableSummary>(runVerifyTask)
