/** Registers every XRPC method the labeler serves (subscribeLabels is mounted by the server). */
import type { LabelerContext } from '../context.js'
import queryLabels from './com/atproto/label/queryLabels.js'
import createReport from './com/atproto/moderation/createReport.js'
import createLabel from './com/stratos/labeler/admin/createLabel.js'
import listLabels from './com/stratos/labeler/admin/listLabels.js'
import listReports from './com/stratos/labeler/admin/listReports.js'
import negateLabel from './com/stratos/labeler/admin/negateLabel.js'

export function registerApi(ctx: LabelerContext): void {
  for (const register of [queryLabels, createReport, createLabel, negateLabel, listLabels, listReports]) register(ctx)
}
