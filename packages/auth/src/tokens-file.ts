import { ConfigError, watchFile } from '@platform/http-common';
import type { FastifyBaseLogger } from 'fastify';
import { createHash, timingSafeEqual } from 'node:crypto';
import { open } from 'node:fs/promises';
import Type, { type Static } from 'typebox';
import Value from 'typebox/value';
import { isMap, isScalar, isSeq, parseDocument } from 'yaml';

const TokenEntry = Type.Object({
  name: Type.String({ minLength: 1 }),
  token: Type.String({ minLength: 1 }),
  is_disabled: Type.Optional(Type.Boolean()),
});

export const TokensFileSchema = Type.Object({
  tokens: Type.Union([Type.Array(TokenEntry), Type.Null()]),
});
export type TokensFile = Static<typeof TokensFileSchema>;

interface Entry {
  name: string;
  digest: Buffer;
  /** False when no Authorization header can carry the token, so it can never match (bearer.ts). */
  sendable: boolean;
  /** Keys of its entry other than name, token and is_disabled: a misspelt is_disabled disables nothing. */
  otherKeys: string[];
}

/** The keys an entry is read for; any other is ignored, as the original ignored it. */
const KEYS = new Set(Object.keys(TokenEntry.properties));

/**
 * What a bearer token in a header can be: visible ASCII, no whitespace. A header is read as latin1
 * and trimmed, and bearer.ts takes the token up to the first whitespace, so `" secret "` or a
 * non-ASCII token in the file can never match what a client sends.
 */
const SENDABLE = /^[\x21-\x7e]+$/;

const sha256 = (value: string) => createHash('sha256').update(value, 'utf8').digest();

/**
 * The YAML, or an error that says where it is invalid but quotes none of it: the yaml library's
 * message shows the offending lines, which in a tokens file are the tokens, and the message is logged.
 *
 * Read as the original service's Go YAML library read it into its struct: YAML 1.1, so
 * `is_disabled: yes` (or on, y) disables a token (as YAML 1.2 it was a string, the file was
 * refused, and the token an operator meant to revoke stayed valid), while a name or token is the
 * text written, whatever it looks like (`name: off` is "off", not false), except a null, which Go
 * read as no value: a token or name of `~` or `null` is refused, as an empty one is.
 */
function parseYamlQuietly(text: string): unknown {
  // logLevel 'error': warnings are not printed either (they would go to stderr unformatted).
  const doc = parseDocument(text, { version: '1.1', prettyErrors: false, logLevel: 'error' });
  const err = doc.errors[0];
  if (err) {
    const before = text.slice(0, err.pos[0]).split('\n');
    throw new Error(`tokens file is not valid YAML (${err.code} at line ${before.length}, column ${before.at(-1)!.length + 1})`);
  }
  const tokens = doc.get('tokens');
  for (const item of isSeq(tokens) ? tokens.items : []) {
    if (!isMap(item)) continue;
    for (const key of ['name', 'token']) {
      const node = item.get(key, true);
      // Not a null (`~`, `null`, empty): it stays null, which the schema refuses. Taken as its text,
      // `token: null` (a generator's missing value) made `Bearer null` a valid token.
      if (isScalar(node) && node.type === 'PLAIN' && node.source !== undefined && node.value !== null) node.value = node.source;
    }
  }
  try {
    return doc.toJS();
  } catch (err) {
    // No `cause`: the reason is logged, and the yaml library's own error may carry the file's text.
    // eslint-disable-next-line preserve-caught-error
    throw new Error(`tokens file is not valid YAML (${(err as Error).name})`);
  }
}

/**
 * The largest tokens file read: what a Kubernetes Secret can hold (1 MiB), tens of thousands of
 * tokens. The file is parsed on the event loop, ~1.2 s per MiB here: a 10 MB file (a wrong file
 * mounted, a runaway generator) stalled every request, admission reviews included, for 15 s, past
 * the API server's webhook timeout.
 */
const TOKENS_FILE_MAX_BYTES = 1024 * 1024;

/**
 * How often a file that could not be read is read again, until it can (watchFile's retryMs): a
 * failure that changes nothing in it (EMFILE while the process was out of descriptors, EIO, an NFS
 * ESTALE) left every token refused until someone edited the file. A second: writes refused for
 * about that long after the cause clears, one open a second meanwhile.
 */
const RETRY_UNREADABLE_MS = 1000;

const tooLarge = (bytes: number) => `tokens file is ${bytes} bytes, more than the ${TOKENS_FILE_MAX_BYTES} a tokens file may have`;

/** A file over TOKENS_FILE_MAX_BYTES, refused by its size: invalid, not unreadable. */
class TooLarge extends Error {}

/**
 * The file's text, unless it is larger than a tokens file may be: that one is not read at all.
 * Read whole, a 300 MB file took the process from 446 MB to 2.2 GB resident (the text read twice,
 * to see it settled), and one over 512 MB, which no string can hold, failed as unreadable, so
 * every token was dropped instead of the last good ones kept.
 */
async function readTokensText(file: string): Promise<string> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    if (size > TOKENS_FILE_MAX_BYTES) throw new TooLarge(tooLarge(size));
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

/** Parses a tokens file; throws with a readable reason when it is not valid, never quoting a token. */
export function parseTokensFile(text: string): Entry[] {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > TOKENS_FILE_MAX_BYTES) throw new Error(tooLarge(bytes));
  const doc: unknown = parseYamlQuietly(text);
  if (!Value.Check(TokensFileSchema, doc)) {
    const first = Value.Errors(TokensFileSchema, doc)[0];
    throw new Error(
      `tokens file does not match {tokens: [{name, token, is_disabled}]}: ${first?.instancePath || '/'} ${first?.message ?? ''}`,
    );
  }
  const tokens = doc.tokens ?? [];
  // A token disabled under one name is disabled: its owner must not find it still accepted
  // because the file also lists it, enabled, under another.
  const disabled = new Set(tokens.filter((t) => t.is_disabled).map((t) => t.token));
  return tokens
    .filter((t) => !disabled.has(t.token))
    .map((t) => ({
      name: t.name,
      digest: sha256(t.token),
      sendable: SENDABLE.test(t.token),
      otherKeys: Object.keys(t).filter((key) => !KEYS.has(key)),
    }));
}

/**
 * The bearer tokens of a YAML file, kept current while the file changes:
 * - edited in place, atomically replaced, or swapped through a Kubernetes `..data` symlink: reloaded;
 * - invalid YAML or shape: the last good set stays, an error is logged;
 * - missing, deleted or unreadable: no token is valid, so writes fail closed, and it is read
 *   again every RETRY_UNREADABLE_MS until it can be, changed or not.
 * Only SHA-256 digests of the tokens are kept; a presented token is compared against every one
 * of them in constant time.
 */
export class TokenStore {
  private entries: Entry[] = [];
  private lastText: string | undefined;
  /** The last invalid content logged, so an invalid file is reported once per change, not per event. */
  private lastInvalid: string | undefined;
  private missing = false;
  private watcher: { close(): Promise<void> } | undefined;
  private loading: Promise<unknown> = Promise.resolve();

  /**
   * @param opts.settleMs A changed file applies only once it has read the same twice this far
   *   apart (default 100 ms): a writer that truncates the file and writes it in parts would
   *   otherwise have its prefix read, and a prefix is often valid YAML (the list cut at a line)
   *   that drops tokens, or drops an `is_disabled: true` and so enables a token its owner disabled.
   * @param opts.pollMs How often the file is checked for a change (watchFile's default: 250 ms).
   */
  constructor(
    readonly file: string,
    private readonly log: Pick<FastifyBaseLogger, 'info' | 'warn' | 'error'>,
    private readonly opts: { settleMs?: number; pollMs?: number } = {},
  ) {}

  /** Loads the file and starts watching it; a file missing or invalid at start is a ConfigError (exit 2). */
  async start(): Promise<this> {
    let text: string;
    try {
      text = await readTokensText(this.file);
    } catch (err) {
      if (err instanceof TooLarge) throw new ConfigError(`--tokens-file ${this.file}: ${err.message}`);
      throw new ConfigError(
        `--tokens-file ${this.file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      );
    }
    try {
      this.entries = parseTokensFile(text);
    } catch (err) {
      throw new ConfigError(`--tokens-file ${this.file}: ${(err as Error).message}`);
    }
    this.lastText = text;
    this.logLoaded();
    this.watcher = await watchFile(this.file, () => this.reload(), { pollMs: this.opts.pollMs, retryMs: RETRY_UNREADABLE_MS });
    return this;
  }

  async close(): Promise<void> {
    await this.watcher?.close();
    await this.loading;
  }

  get size(): number {
    return this.entries.length;
  }

  /**
   * Re-reads the file: false when it could not be read (the watch then reads it again). Serialised,
   * so a burst of events cannot apply an older read last.
   */
  reload(): Promise<boolean> {
    const read = this.loading.then(() => this.read());
    this.loading = read;
    return read;
  }

  private async read(): Promise<boolean> {
    let text: string;
    try {
      text = await readTokensText(this.file);
      if (text !== this.lastText && text !== this.lastInvalid) {
        await new Promise((resolve) => setTimeout(resolve, this.opts.settleMs ?? 100));
        // Still being written: the write's own change event brings another read.
        if ((await readTokensText(this.file)) !== text) return true;
      }
    } catch (err) {
      if (err instanceof TooLarge) {
        this.missing = false;
        if (err.message !== this.lastInvalid) {
          this.lastInvalid = err.message;
          this.log.error({ file: this.file, reason: err.message }, 'tokens file invalid; keeping the previous tokens');
        }
        return true;
      }
      if (!this.missing) {
        this.log.warn({ file: this.file, code: (err as NodeJS.ErrnoException).code }, 'tokens file unreadable; no token is valid');
      }
      this.missing = true;
      this.entries = [];
      this.lastText = undefined;
      return false;
    }
    if (this.missing) this.log.info({ file: this.file }, 'tokens file readable again');
    this.missing = false;
    if (text === this.lastText || text === this.lastInvalid) return true;
    try {
      this.entries = parseTokensFile(text);
      this.lastText = text;
      this.lastInvalid = undefined;
      this.logLoaded();
    } catch (err) {
      this.lastInvalid = text;
      this.log.error({ file: this.file, reason: (err as Error).message }, 'tokens file invalid; keeping the previous tokens');
    }
    return true;
  }

  /** Says what was loaded, and names (never quotes) the tokens no client can send, or with keys it ignores. */
  private logLoaded(): void {
    this.log.info({ file: this.file, tokens: this.entries.length }, 'tokens loaded');
    const unsendable = this.entries.filter((e) => !e.sendable).map((e) => e.name);
    if (unsendable.length) {
      this.log.warn(
        { file: this.file, names: unsendable },
        'tokens that can never match: a bearer token is visible ASCII without spaces (check for quotes or spaces around it)',
      );
    }
    const unknown = this.entries.filter((e) => e.otherKeys.length).map((e) => ({ name: e.name, keys: e.otherKeys }));
    if (unknown.length) {
      this.log.warn(
        { file: this.file, tokens: unknown },
        'tokens with keys other than name, token and is_disabled, which are ignored: these tokens are valid (check for a misspelt is_disabled)',
      );
    }
  }

  /** The name of the token, or undefined. Takes the same time whichever token (if any) matches. */
  verify(presented: string): string | undefined {
    const digest = sha256(presented);
    let match: string | undefined;
    for (const entry of this.entries) {
      if (timingSafeEqual(entry.digest, digest) && match === undefined) match = entry.name;
    }
    return match;
  }
}
