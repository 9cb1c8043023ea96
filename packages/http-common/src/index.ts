export { createApp, SERVER_TIMEOUTS, type App, type CreateAppOptions, type ServerTimeouts } from './app.js';
export { ConfigError, HelpRequested, loadConfig, usage, type ConfigMeta } from './config.js';
export { fieldErrors, installErrorHandler, installNotFoundHandler, problemOf, sendProblem } from './error-handler.js';
export { bodyReadBefore, plainJsonBody, type DirectExchange, type DirectHandler } from './direct-routes.js';
export { jsonBodyParser, parseJsonBody, PrototypeKeyRefused, readBodiesAsJson } from './json-bodies.js';
export { validatorCompiler } from './validation.js';
export { parseListen } from './listen.js';
export { createLogger, loggerOptions, REDACT_PATHS, type Logger } from './logger.js';
export { addGauge } from './metrics.js';
export { CONNECTION_CAP } from './node-server.js';
export {
  badRequest,
  conflict,
  HttpProblem,
  notFound,
  ProblemSchema,
  unavailable,
  statusTitle,
  type FieldError,
  type ProblemBody,
} from './problem.js';
export { listenWithGrace } from './run.js';
export { readTls, reloadTlsOnChange, type TlsFiles } from './tls.js';
export { watchFile } from './watch-file.js';
export { runMain } from './main.js';
