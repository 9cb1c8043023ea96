export { bearerAuth } from './bearer.js';
export { parseTokensFile, TokenStore, TokensFileSchema, type TokensFile } from './tokens-file.js';
export { XAuthTokenVerifier, type XAuthTokenCheck, type XAuthTokenOptions, type XAuthTokenStats } from './x-auth-token.js';
