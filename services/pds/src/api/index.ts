import type { SubscriptionServer } from '@stratos/core/stream'
import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../context.js'
import identityResolveHandle from './com/atproto/identity/resolveHandle.js'
import repoApplyWrites from './com/atproto/repo/applyWrites.js'
import repoCreateRecord from './com/atproto/repo/createRecord.js'
import repoDeleteRecord from './com/atproto/repo/deleteRecord.js'
import repoDescribeRepo from './com/atproto/repo/describeRepo.js'
import repoGetRecord from './com/atproto/repo/getRecord.js'
import repoImportRepo from './com/atproto/repo/importRepo.js'
import repoListMissingBlobs from './com/atproto/repo/listMissingBlobs.js'
import repoListRecords from './com/atproto/repo/listRecords.js'
import repoPutRecord from './com/atproto/repo/putRecord.js'
import repoUploadBlob from './com/atproto/repo/uploadBlob.js'
import serverActivateAccount from './com/atproto/server/activateAccount.js'
import serverCheckAccountStatus from './com/atproto/server/checkAccountStatus.js'
import serverCreateAccount from './com/atproto/server/createAccount.js'
import serverCreateAppPassword from './com/atproto/server/createAppPassword.js'
import serverCreateInviteCode from './com/atproto/server/createInviteCode.js'
import serverCreateInviteCodes from './com/atproto/server/createInviteCodes.js'
import serverCreateSession from './com/atproto/server/createSession.js'
import serverDeactivateAccount from './com/atproto/server/deactivateAccount.js'
import serverDeleteSession from './com/atproto/server/deleteSession.js'
import serverDescribeServer from './com/atproto/server/describeServer.js'
import serverGetAccountInviteCodes from './com/atproto/server/getAccountInviteCodes.js'
import serverGetServiceAuth from './com/atproto/server/getServiceAuth.js'
import serverGetSession from './com/atproto/server/getSession.js'
import serverListAppPasswords from './com/atproto/server/listAppPasswords.js'
import serverRefreshSession from './com/atproto/server/refreshSession.js'
import serverRevokeAppPassword from './com/atproto/server/revokeAppPassword.js'
import syncGetBlob from './com/atproto/sync/getBlob.js'
import syncGetBlocks from './com/atproto/sync/getBlocks.js'
import syncGetLatestCommit from './com/atproto/sync/getLatestCommit.js'
import syncGetRecord from './com/atproto/sync/getRecord.js'
import syncGetRepo from './com/atproto/sync/getRepo.js'
import syncGetRepoStatus from './com/atproto/sync/getRepoStatus.js'
import syncListBlobs from './com/atproto/sync/listBlobs.js'
import syncListRepos from './com/atproto/sync/listRepos.js'
import subscribeRepos from './com/atproto/sync/subscribeRepos.js'

// account life cycle, preferences, admin (app.bsky.* proxying is the server's catch-all: ../proxy)
import actorGetPreferences from './app/bsky/actor/getPreferences.js'
import actorPutPreferences from './app/bsky/actor/putPreferences.js'
import adminDeleteAccount from './com/atproto/admin/deleteAccount.js'
import adminDisableAccountInvites from './com/atproto/admin/disableAccountInvites.js'
import adminDisableInviteCodes from './com/atproto/admin/disableInviteCodes.js'
import adminEnableAccountInvites from './com/atproto/admin/enableAccountInvites.js'
import adminGetAccountInfo from './com/atproto/admin/getAccountInfo.js'
import adminGetAccountInfos from './com/atproto/admin/getAccountInfos.js'
import adminGetInviteCodes from './com/atproto/admin/getInviteCodes.js'
import adminGetSubjectStatus from './com/atproto/admin/getSubjectStatus.js'
import adminSendEmail from './com/atproto/admin/sendEmail.js'
import adminUpdateAccountEmail from './com/atproto/admin/updateAccountEmail.js'
import adminUpdateAccountHandle from './com/atproto/admin/updateAccountHandle.js'
import adminUpdateAccountPassword from './com/atproto/admin/updateAccountPassword.js'
import adminUpdateSubjectStatus from './com/atproto/admin/updateSubjectStatus.js'
import identityGetRecommendedDidCredentials from './com/atproto/identity/getRecommendedDidCredentials.js'
import identityRequestPlcOperationSignature from './com/atproto/identity/requestPlcOperationSignature.js'
import identitySignPlcOperation from './com/atproto/identity/signPlcOperation.js'
import identitySubmitPlcOperation from './com/atproto/identity/submitPlcOperation.js'
import identityUpdateHandle from './com/atproto/identity/updateHandle.js'
import serverConfirmEmail from './com/atproto/server/confirmEmail.js'
import serverDeleteAccount from './com/atproto/server/deleteAccount.js'
import serverRequestAccountDelete from './com/atproto/server/requestAccountDelete.js'
import serverRequestEmailConfirmation from './com/atproto/server/requestEmailConfirmation.js'
import serverRequestEmailUpdate from './com/atproto/server/requestEmailUpdate.js'
import serverRequestPasswordReset from './com/atproto/server/requestPasswordReset.js'
import serverReserveSigningKey from './com/atproto/server/reserveSigningKey.js'
import serverResetPassword from './com/atproto/server/resetPassword.js'
import serverUpdateEmail from './com/atproto/server/updateEmail.js'

const methods = [
  identityResolveHandle,
  repoApplyWrites,
  repoCreateRecord,
  repoDeleteRecord,
  repoDescribeRepo,
  repoGetRecord,
  repoImportRepo,
  repoListMissingBlobs,
  repoListRecords,
  repoPutRecord,
  repoUploadBlob,
  serverActivateAccount,
  serverCheckAccountStatus,
  serverCreateAccount,
  serverCreateAppPassword,
  serverCreateInviteCode,
  serverCreateInviteCodes,
  serverCreateSession,
  serverDeactivateAccount,
  serverDeleteSession,
  serverDescribeServer,
  serverGetAccountInviteCodes,
  serverGetServiceAuth,
  serverGetSession,
  serverListAppPasswords,
  serverRefreshSession,
  serverRevokeAppPassword,
  syncGetBlob,
  syncGetBlocks,
  syncGetLatestCommit,
  syncGetRecord,
  syncGetRepo,
  syncGetRepoStatus,
  syncListBlobs,
  syncListRepos,
]

const lifecycleMethods = [
  actorGetPreferences,
  actorPutPreferences,
  adminDeleteAccount,
  adminDisableAccountInvites,
  adminDisableInviteCodes,
  adminEnableAccountInvites,
  adminGetAccountInfo,
  adminGetAccountInfos,
  adminGetInviteCodes,
  adminGetSubjectStatus,
  adminSendEmail,
  adminUpdateAccountEmail,
  adminUpdateAccountHandle,
  adminUpdateAccountPassword,
  adminUpdateSubjectStatus,
  identityGetRecommendedDidCredentials,
  identityRequestPlcOperationSignature,
  identitySignPlcOperation,
  identitySubmitPlcOperation,
  identityUpdateHandle,
  serverConfirmEmail,
  serverDeleteAccount,
  serverRequestAccountDelete,
  serverRequestEmailConfirmation,
  serverRequestEmailUpdate,
  serverRequestPasswordReset,
  serverReserveSigningKey,
  serverResetPassword,
  serverUpdateEmail,
]

/** Registers every XRPC method the PDS serves, and mounts the repo event stream. */
export function registerApi(server: XrpcServer, ctx: AppContext): { subscriptions: SubscriptionServer } {
  for (const register of methods) register(server, ctx)
  for (const register of lifecycleMethods) register(server, ctx)
  return { subscriptions: subscribeRepos(server, ctx) }
}
