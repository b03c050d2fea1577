/** Default XRPC error names and human messages by HTTP status (the names @atproto/xrpc clients know). */
const DEFAULTS: Record<number, [name: string, message: string]> = {
  400: ['InvalidRequest', 'Invalid Request'],
  401: ['AuthenticationRequired', 'Authentication Required'],
  403: ['Forbidden', 'Forbidden'],
  404: ['NotFound', 'Not Found'],
  405: ['MethodNotAllowed', 'Method Not Allowed'],
  406: ['NotAcceptable', 'Not Acceptable'],
  408: ['RequestTimeout', 'Request Timeout'],
  413: ['PayloadTooLarge', 'Payload Too Large'],
  414: ['URITooLong', 'URI Too Long'],
  415: ['UnsupportedMediaType', 'Unsupported Media Type'],
  429: ['RateLimitExceeded', 'Rate Limit Exceeded'],
  431: ['RequestHeaderFieldsTooLarge', 'Request Header Fields Too Large'],
  500: ['InternalServerError', 'Internal Server Error'],
  501: ['MethodNotImplemented', 'Method Not Implemented'],
  502: ['UpstreamFailure', 'Upstream Failure'],
  503: ['NotEnoughResources', 'Not Enough Resources'],
  504: ['UpstreamTimeout', 'Upstream Timeout'],
}

export function defaultErrorName(status: number): string {
  return DEFAULTS[status]?.[0] ?? (status >= 500 ? 'InternalServerError' : 'InvalidRequest')
}

export function defaultErrorMessage(status: number): string {
  return DEFAULTS[status]?.[1] ?? (status >= 500 ? 'Internal Server Error' : 'Invalid Request')
}

export type ErrorHeaders = Record<string, string>

/**
 * An error that goes on the wire as `{"error": <name>, "message": <text>}` with `status`.
 * `error` defaults to the standard name for the status (InvalidRequest, AuthenticationRequired, ...);
 * a lexicon's own error names (RecordNotFound, ...) go there too.
 */
export class XRPCError extends Error {
  readonly status: number
  readonly error: string
  headers: ErrorHeaders

  constructor(status: number, error?: string, message?: string, headers?: ErrorHeaders, options?: ErrorOptions) {
    const code = Number.isInteger(status) && status >= 400 && status < 600 ? status : 500
    super(message || defaultErrorMessage(code), options)
    this.name = 'XRPCError'
    this.status = code
    this.error = error || defaultErrorName(code)
    this.headers = { ...(headers ?? {}) }
  }

  get statusCode(): number {
    return this.status
  }

  toJSON(): { error: string; message: string } {
    return { error: this.error, message: this.message }
  }
}

export class InvalidRequestError extends XRPCError {
  constructor(message?: string, error?: string, options?: ErrorOptions) {
    super(400, error, message, undefined, options)
  }
}

export interface AuthRequiredOptions extends ErrorOptions {
  /** WWW-Authenticate challenge (default `Bearer`). */
  wwwAuthenticate?: string
  /**
   * Set when the request carried no credentials of the verifier's kind (no Authorization header, or
   * another scheme): `anyOf` then prefers another verifier's error.
   */
  missing?: boolean
}

export class AuthRequiredError extends XRPCError {
  readonly missing: boolean
  constructor(message?: string, error?: string, opts: AuthRequiredOptions = {}) {
    super(401, error, message, { 'WWW-Authenticate': opts.wwwAuthenticate ?? 'Bearer' }, opts)
    this.missing = opts.missing ?? false
  }
}

export class ForbiddenError extends XRPCError {
  constructor(message?: string, error?: string, options?: ErrorOptions) {
    super(403, error, message, undefined, options)
  }
}

export class NotFoundError extends XRPCError {
  constructor(message?: string, error?: string, options?: ErrorOptions) {
    super(404, error, message, undefined, options)
  }
}

export class PayloadTooLargeError extends XRPCError {
  constructor(message?: string, error?: string, options?: ErrorOptions) {
    super(413, error, message, undefined, options)
  }
}

export class RateLimitExceededError extends XRPCError {
  /** Seconds until a retry can succeed (sent as Retry-After). */
  readonly retryAfter: number
  constructor(message?: string, retryAfterSeconds = 1, headers?: ErrorHeaders, options?: ErrorOptions) {
    const retryAfter = Math.max(1, Math.ceil(retryAfterSeconds))
    super(429, 'RateLimitExceeded', message, { ...(headers ?? {}), 'Retry-After': String(retryAfter) }, options)
    this.retryAfter = retryAfter
  }
}

export class InternalServerError extends XRPCError {
  constructor(message?: string, error?: string, options?: ErrorOptions) {
    super(500, error, message, undefined, options)
  }
}

export class MethodNotImplementedError extends XRPCError {
  constructor(message?: string, error?: string, options?: ErrorOptions) {
    super(501, error, message, undefined, options)
  }
}

export class UpstreamFailureError extends XRPCError {
  constructor(message?: string, error?: string, options?: ErrorOptions) {
    super(502, error, message, undefined, options)
  }
}

export class NotEnoughResourcesError extends XRPCError {
  constructor(message?: string, error?: string, options?: ErrorOptions) {
    super(503, error, message, undefined, options)
  }
}

export class UpstreamTimeoutError extends XRPCError {
  constructor(message?: string, error?: string, options?: ErrorOptions) {
    super(504, error, message, undefined, options)
  }
}

/**
 * Turns anything thrown into an XRPCError:
 * - XRPCError: itself;
 * - an @atproto/xrpc client error (an upstream call failed): its status and name when it is an HTTP
 *   error status, else 502 UpstreamFailure;
 * - errors carrying an HTTP `statusCode` (fastify's own: bad JSON, body too large, bad content type):
 *   that status with the standard name and the error's message (5xx messages hidden);
 * - anything else: 500 InternalServerError, message hidden unless `expose`.
 */
export function toXrpcError(err: unknown, expose = false): XRPCError {
  if (err instanceof XRPCError) return err
  if (isClientXrpcError(err)) {
    if (err.status >= 400 && err.status < 600) {
      return new XRPCError(err.status, err.error, err.message, undefined, { cause: err })
    }
    return new UpstreamFailureError(expose ? err.message : undefined, undefined, { cause: err })
  }
  const statusCode = (err as { statusCode?: unknown } | null)?.statusCode
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 600) {
    const message = statusCode < 500 || expose ? (err as Error).message : undefined
    return new XRPCError(statusCode, undefined, message, undefined, { cause: err })
  }
  const message = expose && err instanceof Error ? err.message : undefined
  return new InternalServerError(message, undefined, { cause: err })
}

/**
 * The client library's XRPCError and its typed subclasses (thrown by AtpAgent / XrpcClient calls to other
 * services): recognised by shape, so that no particular copy of @atproto/xrpc has to be the one loaded.
 */
function isClientXrpcError(err: unknown): err is Error & { status: number; error: string } {
  return (
    err instanceof Error &&
    (err as { success?: unknown }).success === false &&
    typeof (err as { status?: unknown }).status === 'number' &&
    typeof (err as { error?: unknown }).error === 'string'
  )
}
