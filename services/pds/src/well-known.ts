import type { FastifyInstance } from 'fastify'
import type { AppContext } from './context.js'

/** Plain HTTP routes next to XRPC: the front page, handle and service-DID well-knowns, robots.txt. */
export function registerBasicRoutes(app: FastifyInstance, ctx: AppContext): void {
  const { cfg } = ctx

  app.get('/', async (_req, reply) => {
    reply.type('text/plain; charset=utf-8')
    return [
      'This is an AT Protocol Personal Data Server (PDS), run with Stratos.',
      '',
      'Most API routes are under /xrpc/',
      '',
      '      Code: https://github.com/ (Stratos)',
      ` Protocol: https://atproto.com`,
      `  Service: ${cfg.service.did}`,
      '',
    ].join('\n')
  })

  app.get('/robots.txt', async (_req, reply) => {
    reply.type('text/plain; charset=utf-8')
    return '# Hello!\n\nUser-agent: *\nAllow: /\n'
  })

  app.get('/.well-known/atproto-did', async (req, reply) => {
    const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase()
    const account = host ? await ctx.accounts.getAccount(host) : null
    reply.type('text/plain; charset=utf-8')
    if (!account) {
      reply.code(404)
      return 'User not found'
    }
    return account.did
  })

  app.get('/.well-known/did.json', async (_req, reply) => {
    if (cfg.service.did !== `did:web:${cfg.service.hostname}`) {
      reply.code(404)
      return { error: 'NotFound', message: 'this service does not use a did:web on this host' }
    }
    return {
      '@context': ['https://www.w3.org/ns/did/v1'],
      id: cfg.service.did,
      service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: cfg.service.publicUrl }],
    }
  })
}
