/** The XRPC errors the PDS throws: core's classes, re-exported so domain modules import one place. */
export {
  XRPCError,
  InvalidRequestError,
  AuthRequiredError,
  ForbiddenError,
  NotFoundError,
  PayloadTooLargeError,
  MethodNotImplementedError,
  UpstreamFailureError,
  InternalServerError,
} from '@stratos/core/xrpc'
