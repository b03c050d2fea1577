import type { LabelerContext } from '../../../../../context.js'
import { checkSubject, labelView } from '../../../../util.js'

/** com.stratos.labeler.admin.createLabel: sign and publish a label. */
export default function (ctx: LabelerContext): void {
  ctx.xrpc.method('com.stratos.labeler.admin.createLabel', {
    auth: ctx.auth.admin,
    handler: async ({ input }) => {
      const { uri, cid, val, exp } = input!.body as { uri: string; cid?: string; val: string; exp?: string }
      checkSubject(uri)
      const [stored] = await ctx.labels.apply([{ uri, cid, val, exp }])
      ctx.log.info({ uri, val, seq: stored!.seq }, 'label created')
      return { encoding: 'application/json', body: labelView(stored!) }
    },
  })
}
