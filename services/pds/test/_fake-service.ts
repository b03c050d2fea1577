import { readBody, createXrpcServer, parseAuthorization, XRPCError, type XrpcServer } from '@stratos/core/xrpc'
import { AuthError, verifyServiceJwt } from '@stratos/core/auth'
import { IdentityResolver } from '@stratos/core/identity'
import { generateKeypair } from '@stratos/core/crypto'
import { PlcClient, signPlcOperation, didForGenesisOp } from '../src/account/plc.js'

export interface SeenCall {
  nsid: string
  iss: string
  aud: string
  lxm?: string
  query: string
  body?: unknown
  headers: Record<string, string | string[] | undefined>
}

/**
 * A stand-in for an AppView or another atproto service: verifies the service-auth JWT of every call
 * (signature with the issuer's key from the PLC directory, audience, lxm = the method) and answers from
 * `responses` (or echoes what it saw). `repoRev` is sent as Atproto-Repo-Rev.
 */
export class FakeService {
  readonly calls: SeenCall[] = []
  repoRev: string | null = null
  plcUrl = ''
  responses = new Map<string, (call: SeenCall) => unknown>()
  /** tokens for these methods are expected to carry another lxm (getFeed → getFeedSkeleton) */
  expectedLxm = new Map<string, string>()
  private resolver: IdentityResolver | null = null
  private constructor(
    readonly server: XrpcServer,
    readonly audiences: string[],
  ) {}

  get url(): string {
    return this.server.url
  }

  static async start(audiences: string[]): Promise<FakeService> {
    let svc: FakeService | null = null
    const server = createXrpcServer({
      logger: false,
      metrics: false,
      catchall: async ({ nsid, req, reply, rawBody }) => {
        const self = svc!
        self.resolver ??= new IdentityResolver({ plcUrl: self.plcUrl, allowPrivateAddresses: true })
        const token = parseAuthorization(req, 'Bearer')
        if (!token) throw new XRPCError(401, 'AuthenticationRequired', 'fake service: no service token')
        let payload
        try {
          payload = await verifyServiceJwt(token, {
            audience: self.audiences,
            lxm: self.expectedLxm.get(nsid) ?? nsid,
            getSigningKey: (iss, force) => self.resolver!.getSigningKey(iss, force),
          })
        } catch (err) {
          if (err instanceof AuthError) throw new XRPCError(401, err.error, err.message)
          throw err
        }
        let body: unknown
        if (rawBody) {
          const bytes = await readBody(rawBody, 1024 * 1024)
          if (bytes.length > 0) body = JSON.parse(bytes.toString('utf8'))
        }
        const call: SeenCall = {
          nsid,
          iss: payload.iss,
          aud: payload.aud,
          lxm: payload.lxm,
          query: req.url.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '',
          body,
          headers: req.headers,
        }
        self.calls.push(call)
        const respond = self.responses.get(nsid)
        const out = respond ? respond(call) : { echo: call.nsid, iss: call.iss, aud: call.aud, lxm: call.lxm, query: call.query, body }
        if (self.repoRev) reply.header('atproto-repo-rev', self.repoRev)
        reply.header('atproto-content-labelers', 'did:plc:labelerone')
        return { encoding: 'application/json', body: out }
      },
    })
    await server.listen({ host: '127.0.0.1', port: 0 })
    svc = new FakeService(server, audiences)
    return svc
  }

  async close(): Promise<void> {
    await this.server.close()
  }
}

/** Registers a did:plc at the PLC directory whose document names one service: `#<id>` at `endpoint`. */
export async function registerServiceDid(plcUrl: string, id: string, type: string, endpoint: string): Promise<string> {
  const key = await generateKeypair('k256')
  const op = await signPlcOperation(
    {
      type: 'plc_operation',
      rotationKeys: [key.did()],
      verificationMethods: { atproto: key.did() },
      alsoKnownAs: [],
      services: { [id]: { type, endpoint } },
      prev: null,
    },
    key,
  )
  const did = didForGenesisOp(op)
  await new PlcClient(plcUrl).submit(did, op)
  return did
}
