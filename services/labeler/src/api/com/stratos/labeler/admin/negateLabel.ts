import { InvalidRequestError } from '@stratos/core/xrpc'
import type { LabelerContext } from '../../../../../context.js'
import { checkSubject, labelView } from '../../../../util.js'

/** com.stratos.labeler.admin.negateLabel: withdraw a value from a subject with a negation label. */
export default function (ctx: LabelerContext): void {
  ctx.xrpc.method('com.stratos.labeler.admin.negateLabel', {
    auth: ctx.auth.admin,
    handler: async ({ input }) => {
      const { uri, val } = input!.body as { uri: string; val: string }
      checkSubject(uri)
      const current = await ctx.labels.query({ uriPatterns: [uri.replace(/\*$/, '')], vals: [val], limit: 1 })
      if (current.length === 0) throw new InvalidRequestError(`${uri} does not carry the label ${val}`, 'LabelNotFound')
      const [stored] = await ctx.labels.apply([{ uri, val, neg: true }])
      ctx.log.info({ uri, val, seq: stored!.seq }, 'label negated')
      return { encoding: 'application/json', body: labelView(stored!) }
    },
  })
}
