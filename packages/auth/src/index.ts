export { bearerAuth } from './bearer.js';
export { parseTokensFile, TokenStore, TokensFileSchema, type TokensFile } from './tokens-file.js';
export { XAuthTokenVerifier, type XAuthTokenOptions } from './x-auth-token.js';
