/** Registers every XRPC method the relay serves. */
import type { RelayContext } from '../context.js'
import getHostStatus from './com/atproto/sync/getHostStatus.js'
import getLatestCommit from './com/atproto/sync/getLatestCommit.js'
import getRepo from './com/atproto/sync/getRepo.js'
import getRepoStatus from './com/atproto/sync/getRepoStatus.js'
import listHosts from './com/atproto/sync/listHosts.js'
import listRepos from './com/atproto/sync/listRepos.js'
import listReposByCollection from './com/atproto/sync/listReposByCollection.js'
import requestCrawl from './com/atproto/sync/requestCrawl.js'
import addHost from './com/stratos/relay/admin/addHost.js'
import banHost from './com/stratos/relay/admin/banHost.js'
import getAccount from './com/stratos/relay/admin/getAccount.js'
import listConsumers from './com/stratos/relay/admin/listConsumers.js'
import adminListHosts from './com/stratos/relay/admin/listHosts.js'
import restoreAccount from './com/stratos/relay/admin/restoreAccount.js'
import takedownAccount from './com/stratos/relay/admin/takedownAccount.js'
import unbanHost from './com/stratos/relay/admin/unbanHost.js'
import updateHostLimits from './com/stratos/relay/admin/updateHostLimits.js'

export function registerApi(ctx: RelayContext): void {
  for (const register of [
    listRepos,
    listReposByCollection,
    getLatestCommit,
    getRepoStatus,
    getRepo,
    listHosts,
    getHostStatus,
    requestCrawl,
    adminListHosts,
    addHost,
    banHost,
    unbanHost,
    updateHostLimits,
    takedownAccount,
    restoreAccount,
    getAccount,
    listConsumers,
  ]) {
    register(ctx)
  }
}
