/**
 * Thread views (getPostThread), pure: the anchor post, its parents up to `parentHeight`, its replies
 * down to `depth`. Blocked parents become blockedPost, missing ones notFoundPost; replies from
 * blocked authors, replies breaking the root's threadgate and replies the root's author hid are left
 * out. Replies sort the root author's first, then oldest first.
 */
import type { $Typed, AppBskyFeedDefs } from '@atproto/api'
import type { HydrationState, PostInfo } from '../hydration/hydrator.js'
import { didFromUri } from '../indexer/records.js'
import { blockedPair, viewerBlocks } from './rules.js'
import type { Views } from './views.js'

export type ThreadNode =
  | $Typed<AppBskyFeedDefs.ThreadViewPost>
  | $Typed<AppBskyFeedDefs.NotFoundPost>
  | $Typed<AppBskyFeedDefs.BlockedPost>

export interface ThreadOptions {
  depth: number
  parentHeight: number
}

function hiddenReplies(state: HydrationState, rootUri: string): Set<string> {
  const gate = state.threadgates.get(rootUri)
  const list = gate?.record.hiddenReplies
  return new Set(Array.isArray(list) ? list.filter((u): u is string => typeof u === 'string') : [])
}

/** The thread around `anchorUri`, or undefined when the anchor is not found (or its author hidden). */
export function threadView(
  views: Views,
  state: HydrationState,
  anchorUri: string,
  children: Map<string, string[]>,
  opts: ThreadOptions,
): ThreadNode | undefined {
  const anchor = state.posts.get(anchorUri)
  if (!anchor) return undefined
  if (viewerBlocks(state, anchor.creator)) {
    return { $type: 'app.bsky.feed.defs#blockedPost', uri: anchorUri, blocked: true, author: views.blockedAuthor(state, anchor.creator) }
  }
  const post = views.post(state, anchorUri)
  if (!post) return undefined
  const node: $Typed<AppBskyFeedDefs.ThreadViewPost> = { $type: 'app.bsky.feed.defs#threadViewPost', post }
  if (anchor.replyParent && opts.parentHeight > 0) node.parent = parentNode(views, state, anchor, opts.parentHeight)
  const rootUri = anchor.replyRoot ?? anchor.uri
  const hidden = hiddenReplies(state, rootUri)
  node.replies = replyNodes(views, state, anchor, children, opts.depth, hidden, rootUri)
  return node
}

function parentNode(views: Views, state: HydrationState, child: PostInfo, height: number): ThreadNode {
  const uri = child.replyParent!
  const parent = state.posts.get(uri)
  const authorDid = parent?.creator ?? didFromUri(uri)
  if (parent && authorDid && (viewerBlocks(state, authorDid) || blockedPair(state, child.creator, authorDid))) {
    return { $type: 'app.bsky.feed.defs#blockedPost', uri, blocked: true, author: views.blockedAuthor(state, authorDid) }
  }
  const post = parent ? views.post(state, uri) : undefined
  if (!parent || !post) return { $type: 'app.bsky.feed.defs#notFoundPost', uri, notFound: true }
  const node: $Typed<AppBskyFeedDefs.ThreadViewPost> = { $type: 'app.bsky.feed.defs#threadViewPost', post }
  if (parent.replyParent && height > 1) node.parent = parentNode(views, state, parent, height - 1)
  return node
}

function replyNodes(
  views: Views,
  state: HydrationState,
  parent: PostInfo,
  children: Map<string, string[]>,
  depth: number,
  hidden: Set<string>,
  rootUri: string,
): ThreadNode[] | undefined {
  if (depth <= 0) return undefined
  const rootAuthor = didFromUri(rootUri)
  const replies: PostInfo[] = []
  for (const uri of children.get(parent.uri) ?? []) {
    const reply = state.posts.get(uri)
    if (!reply) continue
    if (reply.violatesThreadGate || hidden.has(uri)) continue
    if (viewerBlocks(state, reply.creator) || blockedPair(state, reply.creator, parent.creator)) continue
    replies.push(reply)
  }
  replies.sort((a, b) => {
    const aOp = a.creator === rootAuthor ? 0 : 1
    const bOp = b.creator === rootAuthor ? 0 : 1
    if (aOp !== bOp) return aOp - bOp
    return a.sortAt < b.sortAt ? -1 : a.sortAt > b.sortAt ? 1 : a.uri < b.uri ? -1 : 1
  })
  const out: ThreadNode[] = []
  for (const reply of replies) {
    const post = views.post(state, reply.uri)
    if (!post) continue
    const node: $Typed<AppBskyFeedDefs.ThreadViewPost> = { $type: 'app.bsky.feed.defs#threadViewPost', post }
    const sub = replyNodes(views, state, reply, children, depth - 1, hidden, rootUri)
    if (sub) node.replies = sub
    out.push(node)
  }
  return out
}
