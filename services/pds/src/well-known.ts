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

  // Caddy's on-demand TLS asks this before it requests a certificate for a host name: yes (200) only for
  // this PDS's own host name and the handles of its accounts, so nobody can make it fetch certificates for
  // arbitrary names pointed at the server.
  app.get('/tls-check', async (req, reply) => {
    const q = req.query as Record<string, unknown>
    const domain = typeof q.domain === 'string' ? q.domain.trim().toLowerCase().replace(/\.$/, '') : ''
    if (!domain) {
      reply.code(400)
      return { error: 'InvalidRequest', message: 'missing domain query parameter' }
    }
    if (domain === cfg.service.hostname) return { success: true }
    if (!cfg.identity.serviceHandleDomains.some((d) => domain.endsWith(d) && domain.length > d.length)) {
      reply.code(400)
      return { error: 'InvalidRequest', message: 'handles are not provided on this domain' }
    }
    const account = await ctx.accounts.getAccount(domain, { includeDeactivated: true })
    if (!account) {
      reply.code(404)
      return { error: 'NotFound', message: 'no account has this handle' }
    }
    return { success: true }
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
