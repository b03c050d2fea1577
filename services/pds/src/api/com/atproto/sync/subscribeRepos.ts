import { mountSubscription, SubscriptionServer } from '@stratos/core/stream'
import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'

/**
 * com.atproto.sync.subscribeRepos: the sequencer's log replayed from `cursor`, then live. Returns the
 * subscription server so the PDS can close it on shutdown.
 */
export default function (server: XrpcServer, ctx: AppContext): SubscriptionServer {
  const subs = new SubscriptionServer({
    log: ctx.sequencer.log,
    // a consumer this many frames behind is cut with ConsumerTooSlow (PDS_MAX_SUBSCRIPTION_BUFFER)
    maxQueuedFrames: ctx.cfg.subscription.maxBuffer,
    onError: (err) => ctx.logger.warn({ err }, 'subscribeRepos consumer error'),
  })
  ctx.sequencer.on('event', (evt) => subs.publish(evt.seq, evt.frame))
  mountSubscription(server.app, 'com.atproto.sync.subscribeRepos', (ws, req, params) => {
    subs.attach(ws, { cursor: params.cursor as number | undefined, remoteAddress: req.socket.remoteAddress })
  }, { maxPerIp: ctx.cfg.subscription.maxPerIp })
  return subs
}
