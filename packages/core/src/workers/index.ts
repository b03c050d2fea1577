export { KeyedWorkerPool, WorkerTaskError, nameThisThread, serveTasks, startWorker, workerExecArgv, type KeyedWorkerPoolOptions } from './pool.js'
export {
  CommitVerifier,
  defaultVerifyWorkers,
  fromPortable,
  recordsToJson,
  runVerifyTask,
  toPortable,
  type CommitVerifierOptions,
  type PortableSummary,
  type RecordJson,
  type VerifySummary,
  type VerifyTask,
  type VerifyTaskContext,
} from './verify.js'
