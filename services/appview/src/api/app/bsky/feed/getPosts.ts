import { json, viewerOf, type Register } from '../../../util.js'
import { presentPosts } from '../../../feed-util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.feed.getPosts', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const posts = await presentPosts(ctx, viewerOf(auth), params.uris as string[])
      return json({ posts })
    },
  })
}
export default register
