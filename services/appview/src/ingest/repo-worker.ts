/** Worker thread entry of RepoVerifier (repo-verify.ts): checks fetched repos in arrival order. */
import { serveTasks } from '@stratos/core/workers'
import { runRepoTask, type RepoTask, type RepoTaskResult } from './repo-verify.js'

serveTasks<RepoTask, RepoTaskResult>(runRepoTask)
